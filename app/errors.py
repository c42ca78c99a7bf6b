"""How the app fails: expected errors reach the user as one plain sentence naming their own file, never a
traceback and never the server's upload folder; unexpected ones are logged for us and reported plainly."""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections.abc import Callable

import gradio as gr

log = logging.getLogger("attn_fiqa.app")


def _upload_folders() -> list[str]:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR``, default <tmp>/gradio): never shown to users."""
    return [os.path.realpath(os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")),
            os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")]


def public_message(message: str) -> str:
    """The message with the server's upload folders removed: users see their own file names, not /tmp/gradio/<hash>/."""
    for folder in _upload_folders():
        message = re.sub(re.escape(folder.rstrip("/")) + r"/[0-9a-fA-F]{16,}/", "", message)
    return message


def user_errors(function: Callable) -> Callable:
    """Expected failures (bad input, no face, missing weights, bad checkpoint) reach the user as one sentence."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except gr.Error:
            raise
        except KeyError as error:  # unknown backbone names: KeyError's str() would add quotes
            raise gr.Error(str(error.args[0]) if error.args else "Unknown name.", print_exception=False) from None
        except (ValueError, RuntimeError, FileNotFoundError) as error:
            # ImageLoadError, NoFaceError, CheckpointError are ValueErrors; BackboneNotAvailable is a RuntimeError.
            raise gr.Error(public_message(str(error)), print_exception=False) from None
        except Exception as error:  # a bug: log it for us, tell the user plainly
            log.exception("unexpected error in %s", function.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}); the server log has the details.",
                           print_exception=False) from None

    return wrapper
