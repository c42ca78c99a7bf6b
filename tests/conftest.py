"""Shared fixtures: the app launched in-process on a free loopback port (HTTP and browser tests)."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The Gradio app on 127.0.0.1, closed after the module's tests."""
    from app import ui

    demo = ui.launch(host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo
    finally:
        demo.close()
