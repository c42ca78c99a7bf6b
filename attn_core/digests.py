"""The project's one way to hash files: content digests of images (cache keys, the app's photo cache) and the
identity of a model's weights (a checkpoint file, or every file of a checkpoint folder)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

__all__ = ["file_digest", "weights_identity"]

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex); raises OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _digest_of_stat(path: str, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def weights_identity(weights: str | os.PathLike) -> str:
    """Identity of a model's weights: the content hash of a checkpoint file (or of every file in a folder).

    Anything that is not a file or folder (``"random (seed 0)"``) is its own identity. Hashes are memoised per
    (path, size, mtime), so a multi-hundred-megabyte checkpoint is read once per process.
    """
    path = Path(weights)
    try:
        if path.is_file():
            stat = path.stat()
            return "sha256:" + _digest_of_stat(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if path.is_dir():
            parts = []
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                stat = item.stat()
                parts.append(f"{item.relative_to(path)}={_digest_of_stat(str(item.resolve()), stat.st_size, stat.st_mtime_ns)}")
            return "sha256-tree:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
    except OSError:
        pass
    return str(weights)
