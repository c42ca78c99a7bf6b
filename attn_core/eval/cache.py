"""On-disk cache of per-file evaluation results (matcher embeddings, quality scores, image measures).

An entry is keyed by WHAT was computed (a model key: the model's name, architecture, weights identity and, for
scores, block / heads / aggregation / tokens) and ON WHAT (the sha256 of the image file's bytes), so renaming or
moving files keeps their entries and editing a file or swapping a checkpoint invalidates them.

Layout: ``<root>/<kind>/<model key>/<content key[:2]>/<content key>.npz``, one small ``.npz`` per entry, written to
a temporary file and renamed into place (atomic, so concurrent runs and interrupted writes never leave a half
entry under the real name). A read that fails or holds the wrong arrays counts as corrupt: the entry is deleted
and the caller recomputes it. Nothing here ever raises because of the cache's own state.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from attn_core.digests import weights_identity
from attn_core.paths import eval_cache_home

CACHE_FORMAT = 1  # bump when the meaning of a stored value changes
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$ATTN_FIQA_HOME/eval`` (default ``~/.cache/attn_fiqa/eval``), beside the weights cache."""
    return eval_cache_home()


def identity_key(*parts: Any) -> str:
    """A short, stable hex key for a tuple of JSON-able identity parts."""
    text = json.dumps([CACHE_FORMAT, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def backbone_identity(backbone) -> str:
    """Architecture (the whole spec) plus weights identity of an :class:`attn_core.zoo.backbone.Backbone`."""
    return identity_key("backbone", repr(backbone.spec), weights_identity(backbone.weights))


def score_key(backbone, options, precision: str = "fp32") -> str:
    """Model key of quality scores: the backbone, every score option (block normalised to its index) and the
    precision of the blocks (bf16 scores are not fp32 scores)."""
    heads = None if options.heads is None or len(options.heads) == 0 else sorted(int(h) for h in options.heads)
    return identity_key("score", backbone_identity(backbone), backbone.block_index(options.block), heads,
                        options.aggregation, options.tokens, *([] if precision == "fp32" else [precision]))


def matcher_key(matcher) -> str:
    """Model key of a matcher's embeddings: its ``identity`` attribute when it has one, else its name."""
    return identity_key("matcher", getattr(matcher, "identity", None) or matcher.name)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0  # entries that could not be read back and were deleted (then recomputed by the caller)
    write_errors: int = 0
    last_error: str = field(default="", repr=False)


class EvalCache:
    """A directory of small ``.npz`` entries; ``EvalCache(None)`` uses :func:`default_cache_dir`.

    With ``enabled=False`` every ``get`` misses and ``put`` does nothing (``--no-cache``).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.enabled = enabled
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def path(self, kind: str, model_key: str, content_key: str) -> Path:
        return self.root / kind / model_key / content_key[:2] / f"{content_key}.npz"

    def get(self, kind: str, model_key: str, content_key: str, required: Sequence[str]) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent or corrupt (missing/extra keys, non-finite values, bad file)."""
        if not self.enabled:
            return None
        path = self.path(kind, model_key, content_key)
        if not path.is_file():
            self._count("misses")
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                arrays = {name: np.array(stored[name]) for name in stored.files}
            if set(arrays) != set(required):
                raise ValueError(f"holds {sorted(arrays)}, expected {sorted(required)}")
            for name, value in arrays.items():
                if value.dtype.kind not in "fiub" or not np.all(np.isfinite(value)):
                    raise ValueError(f"{name} is not a finite numeric array")
        except Exception as error:  # a torn, truncated or foreign file: drop it, the caller recomputes
            self._count("corrupt", f"{path}: {type(error).__name__}: {error}")
            self._count("misses")
            try:
                path.unlink()
            except OSError:
                pass
            return None
        self._count("hits")
        return arrays

    def put(self, kind: str, model_key: str, content_key: str, **arrays: np.ndarray) -> None:
        """Store arrays atomically; a failing write (read-only or full disk) is counted, never raised."""
        if not self.enabled:
            return
        path = self.path(kind, model_key, content_key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
            try:
                with os.fdopen(handle, "wb") as stream:
                    np.savez(stream, **{name: np.asarray(value) for name, value in arrays.items()})
                os.replace(temporary, path)
            except BaseException:
                try:
                    os.unlink(temporary)
                except OSError:
                    pass
                raise
        except OSError as error:
            self._count("write_errors", f"{path}: {error}")

    def _count(self, counter: str, error: str = "") -> None:
        with self._lock:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            if error:
                self.stats.last_error = error
