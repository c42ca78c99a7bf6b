"""Shared fixtures: the app launched in-process on a free loopback port (HTTP and browser tests)."""

from __future__ import annotations

import os
import socket
import tempfile  # noqa: E402

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Tests never touch the internet nor the user's caches: offline, with every cache in a temporary folder that is
# removed at exit. Set before anything imports huggingface_hub (it reads them at import). The Hub tests
# (tests/test_hub.py) run their commands in subprocesses pointed at a local Hub server instead.
_TEST_HOME = tempfile.TemporaryDirectory(prefix="attn_fiqa_tests_")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_TEST_HOME.name, "hf")
os.environ.pop("HF_HUB_CACHE", None)
os.environ["ATTN_FIQA_HOME"] = os.path.join(_TEST_HOME.name, "attn_fiqa")
# Temporary files of the code under test (the app's CSV downloads, Gradio's uploads, subprocesses) land there too.
os.makedirs(os.path.join(_TEST_HOME.name, "tmp"))
os.environ["TMPDIR"] = tempfile.tempdir = os.path.join(_TEST_HOME.name, "tmp")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The Gradio app on 127.0.0.1, closed after the module's tests."""
    from app import ui

    # fp32: the app tests compare the app's numbers with the core's reference path.
    demo = ui.launch(host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True, precision="fp32")
    try:
        yield demo
    finally:
        demo.close()


class _Counter:
    count = 0


@pytest.fixture
def forward_passes(monkeypatch):
    """Counts the model's forward passes (every scoring path, the app's included, runs
    ``attn_core.scoring.model.score_faces``): a spy, so the code under test keeps no counters of its own."""
    import attn_core.scoring.model as model_module

    counter = _Counter()
    real = model_module.score_faces

    def counting(*args, **kwargs):
        counter.count += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(model_module, "score_faces", counting)
    return counter
