"""How the app fails: expected errors reach the user as one plain sentence naming their own file, never a
traceback and never the server's upload folder; unexpected ones are logged for us and reported plainly."""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import gradio as gr

from attn_core.paths import ASSETS_DIR, weights_home
from attn_core.zoo import return_freed_memory

log = logging.getLogger("attn_fiqa.app")


def _upload_folders() -> list[str]:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR``, default <tmp>/gradio): never shown to users."""
    return [os.path.realpath(os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")),
            os.environ.get("GRADIO_TEMP_DIR") or os.path.join(tempfile.gettempdir(), "gradio")]


def public_message(message: str, names: dict[Any, str] | None = None) -> str:
    """The message as users may see it: each server path in ``names`` (e.g. an unpacked zip member) replaced by the
    name the user sent, Gradio's upload folders removed (/tmp/gradio/<hash>/), and the weights folder named by its
    setting instead of where it lies on this server."""
    for path, shown in sorted((names or {}).items(), key=lambda item: -len(str(item[0]))):
        message = message.replace(str(path), shown)
    for folder in _upload_folders():
        message = re.sub(re.escape(folder.rstrip("/")) + r"/[0-9a-fA-F]{16,}/", "", message)
    message = message.replace(str(ASSETS_DIR / "examples") + os.sep, "")  # an example face: its name alone
    return message.replace(str(weights_home()), "$ATTN_FIQA_HOME/weights")


# The time limit of one request (seconds): single photos, then the long runs (a batch of up to 500 photos, an
# evaluation, a sweep). See _within for what a limit can and cannot stop.
REQUEST_SECONDS = 300
LONG_REQUEST_SECONDS = 1800
_limited: contextvars.ContextVar[bool] = contextvars.ContextVar("attn_fiqa_time_limited", default=False)


class RequestTimeout(Exception):
    """A request ran past its time limit."""


def _within(seconds: float, function: Callable, args: tuple, kwargs: dict):
    """``function(*args, **kwargs)`` in a daemon thread, waited for at most ``seconds``.

    Honest limits: Python cannot stop a thread, so past the limit the caller gets RequestTimeout (the user one
    sentence, the queue slot back) while the stuck work is abandoned and runs on until it ends by itself. This is
    a backstop, not the defence: the inputs known to hang a worker (devices such as /dev/zero, FIFOs, files
    outside the upload cache, files over the size cap) are refused before any read by app.photos.image_path,
    and decoding is bounded by attn_core's pixel cap. The thread runs in a copy of the caller's context, so
    Gradio's request context (which the file check reads) and its progress bar reach the work.
    """
    outcome: dict[str, Any] = {}
    context = contextvars.copy_context()
    done = threading.Event()

    def run() -> None:
        _limited.set(True)
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error
        finally:
            done.set()
        # After the answer is handed over (off the request's latency): the request's freed heap back to the OS.
        # Each request runs in a fresh thread, and glibc gives threads heaps of their own (up to 8 per core) that
        # keep freed pages; without this the server grew by every round of load (benchmarks/RESULTS.md).
        return_freed_memory()

    worker = threading.Thread(target=context.run, args=(run,), name=f"attn_fiqa:{function.__name__}", daemon=True)
    worker.start()
    if not done.wait(seconds):
        log.warning("%s ran past its %.0f s limit; its work was abandoned", function.__name__, seconds)
        raise RequestTimeout
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def user_errors(function: Callable | None = None, *, seconds: float = REQUEST_SECONDS) -> Callable:
    """Expected failures (bad input, no face, missing weights, bad checkpoint) reach the user as one sentence, and
    no call runs longer than ``seconds`` (``@user_errors`` or ``@user_errors(seconds=...)``)."""
    if function is None:
        return functools.partial(user_errors, seconds=seconds)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            if _limited.get():  # already inside a limited call: its limit holds
                return function(*args, **kwargs)
            return _within(seconds, function, args, kwargs)
        except gr.Error:
            raise
        except RequestTimeout:
            raise gr.Error(f"This request took longer than its {seconds:.0f} s limit and was stopped; try a smaller "
                           f"photo or fewer files.", print_exception=False) from None
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
