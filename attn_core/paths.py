"""Where the project's files live: the bundled assets and the one home folder for downloads and caches.

The bottom floor of the library: every other module finds assets and its cache folders through these names.
Assets are found by one mechanism: ``$ATTN_FIQA_ASSETS`` if set, else the checkout's ``assets/`` (editable
installs), else the copy a wheel installs under ``sys.prefix/share/attn-fiqa/assets``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["ASSETS_DIR", "attn_fiqa_home", "weights_home", "eval_cache_home"]


def _assets_dir() -> Path:
    """The checkout's assets/ (editable installs), else the copy a wheel installs under sys.prefix."""
    if "ATTN_FIQA_ASSETS" in os.environ:
        return Path(os.environ["ATTN_FIQA_ASSETS"])
    checkout = Path(__file__).resolve().parent.parent / "assets"
    installed = Path(sys.prefix) / "share" / "attn-fiqa" / "assets"
    return checkout if checkout.is_dir() or not installed.is_dir() else installed


ASSETS_DIR = _assets_dir()


def attn_fiqa_home() -> Path:
    """The project's one home folder: ``$ATTN_FIQA_HOME``, default ``~/.cache/attn_fiqa`` (weights/, eval/)."""
    return Path(os.environ.get("ATTN_FIQA_HOME", Path.home() / ".cache" / "attn_fiqa"))


def weights_home() -> Path:
    """Where downloaded or user-installed weights live: ``<home>/weights``."""
    return attn_fiqa_home() / "weights"


def eval_cache_home() -> Path:
    """Where the evaluation cache keeps measured scores and embeddings: ``<home>/eval``."""
    return attn_fiqa_home() / "eval"
