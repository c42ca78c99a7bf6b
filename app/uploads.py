"""Upload safety for the batch and evaluation tabs: image files and zips in, with hard limits on count and size
(zip bombs, huge archives), no path traversal, OS clutter skipped, and every rejected input named with its reason."""

from __future__ import annotations

import re
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from app.photos import image_path
from attn_core.faces import IMAGE_SUFFIXES

# Guards for uploads in the batch tab: a burst of users, or one zip bomb, must not exhaust memory or disk.
MAX_BATCH_FILES = 500
MAX_ZIP_MEMBERS = 500
MAX_ZIP_MEMBER_BYTES = 40 * 1024 * 1024
MAX_ZIP_TOTAL_BYTES = 400 * 1024 * 1024  # per run, over all zips
MAX_UPLOAD = "200mb"  # any one uploaded file (Gradio rejects larger ones before they reach us)


@dataclass
class BatchInputs:
    files: list[tuple[str, Path]]  # (name shown to the user, file on disk)
    errors: list[tuple[str, str]]  # (name, reason) for inputs rejected before scoring
    folder: Path  # temporary folder holding extracted zip members
    unpacked: int = 0  # bytes extracted so far, over every zip of the run


def _metadata(member_name: str) -> bool:
    """OS clutter that is never a photo: macOS resource forks (``__MACOSX/``, ``._x.jpg``), ``.DS_Store``, dot files
    (``..`` is no dot file: such a member gets a row saying why it was refused)."""
    return any((part.startswith(".") and part != "..") or part == "__MACOSX"
               for part in PurePosixPath(member_name).parts)


def _safe_name(part: str) -> str:
    """A readable file or folder name for one path part: no separators, no dots."""
    return re.sub(r"[^\w-]+", "_", part).strip("_") or "_"


def _identity_folder(parts: Sequence[str], folders: dict[tuple[str, ...], str]) -> str:
    """One folder name per distinct directory path of the zip, exactly: ``x y/``, ``x_y/`` and ``x.y/`` are three
    people. Readable (``faces/A`` -> ``0000_faces_A``); the number, in order of first appearance, keeps it unique."""
    key = tuple(parts)
    if key not in folders:
        folders[key] = f"{len(folders):04d}_" + "_".join(_safe_name(part) for part in parts)
    return folders[key]


# What reading one member can raise: a bad CRC or truncated data (BadZipFile, zlib.error, EOFError), an encrypted
# member (RuntimeError), an unsupported compression (NotImplementedError).
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, RuntimeError, NotImplementedError, EOFError)


def unzip(archive: Path, folder: Path, shown: str, inputs: BatchInputs, identity_folders: bool = False) -> None:
    """Extract image members with hard limits on count and size (zip bombs, huge archives), no path traversal.
    Every member that is not extracted gets a row in ``inputs.errors`` with its reason (OS clutter aside).

    With ``identity_folders`` each image lands in ``folder/<one folder per distinct directory path>/`` (the layout
    ``attn_core``'s evaluation reads: one sub-folder per identity); otherwise all land flat in ``folder``.
    """
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [m for m in bundle.infolist()
                       if not m.is_dir() and not _metadata(m.filename.replace("\\", "/"))]
            if len(members) > MAX_ZIP_MEMBERS:
                inputs.errors.append((shown, f"The zip has {len(members)} files; the limit is {MAX_ZIP_MEMBERS}. "
                                             f"Split it into smaller zips."))
                return
            declared = sum(m.file_size for m in members)
            if inputs.unpacked + declared > MAX_ZIP_TOTAL_BYTES:
                inputs.errors.append((shown, f"The zip unpacks to {declared / 2**20:.0f} MiB; the limit is "
                                             f"{MAX_ZIP_TOTAL_BYTES / 2**20:.0f} MiB for all zips of one run."))
                return
            folders: dict[tuple[str, ...], str] = {}
            for number, member in enumerate(members):
                if not _extract(bundle, member, number, folder, shown, inputs, identity_folders, folders):
                    inputs.errors += [(f"{shown}/{rest.filename}", f"Not unpacked: the {MAX_ZIP_TOTAL_BYTES / 2**20:.0f}"
                                                                   f" MiB limit for all zips of one run is reached.")
                                      for rest in members[number + 1:]]
                    return
    except _MEMBER_ERRORS as error:  # the archive itself: not a zip, truncated directory
        inputs.errors.append((shown, f"Cannot read the zip: {error}."))


def _extract(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, number: int, folder: Path, shown: str,
             inputs: BatchInputs, identity_folders: bool, folders: dict[tuple[str, ...], str]) -> bool:
    """One member to disk, or a row saying why not; False when the run's size budget is spent (stop the zip)."""
    name = f"{shown}/{member.filename}"
    member_path = PurePosixPath(member.filename.replace("\\", "/"))
    if ".." in member_path.parts or member_path.is_absolute():
        inputs.errors.append((name, "Its path leaves the zip's folder (.. or an absolute path); skipped."))
        return True
    if member_path.suffix.lower() not in IMAGE_SUFFIXES:
        inputs.errors.append((name, "Not an image file (by its extension); skipped."))
        return True
    if member.file_size > MAX_ZIP_MEMBER_BYTES:
        inputs.errors.append((name, f"Too large ({member.file_size / 2**20:.0f} MiB unpacked); the limit "
                                    f"is {MAX_ZIP_MEMBER_BYTES / 2**20:.0f} MiB per file."))
        return True
    target = folder / f"{number:05d}{member_path.suffix.lower()}"
    if identity_folders:
        if len(member_path.parts) < 2:
            inputs.errors.append((name, "Not inside an identity folder; skipped."))
            return True
        # Keep the file's name readable in the report's per-file CSV; the number keeps it unique.
        target = (folder / _identity_folder(member_path.parts[:-1], folders)
                  / f"{number:05d}_{_safe_name(member_path.stem)}{member_path.suffix.lower()}")
        target.parent.mkdir(exist_ok=True)
    # Never trust the declared sizes: stop reading once the real output passes the limits.
    written = 0
    try:
        with bundle.open(member) as source, open(target, "wb") as sink:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                    break
                sink.write(chunk)
    except _MEMBER_ERRORS as error:  # this member only (a bad CRC): the others are still read
        target.unlink(missing_ok=True)
        inputs.errors.append((name, f"Cannot read this file from the zip ({error}); skipped."))
        return True
    if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
        target.unlink(missing_ok=True)
        inputs.errors.append((name, "Unpacks to more than the size limit; skipped (possible zip bomb)."))
        return inputs.unpacked + written <= MAX_ZIP_TOTAL_BYTES
    inputs.unpacked += written
    inputs.files.append((name, target))
    return True


def collect_batch(files: Sequence[Any]) -> BatchInputs:
    inputs = BatchInputs([], [], Path(tempfile.mkdtemp(prefix="attn_fiqa_batch_")))
    for number, item in enumerate(files):
        path = Path(image_path(item))
        shown = path.name
        if path.suffix.lower() == ".zip":
            member_folder = inputs.folder / f"zip{number}"
            member_folder.mkdir()
            unzip(path, member_folder, shown, inputs)
        else:
            inputs.files.append((shown, path))
    if len(inputs.files) > MAX_BATCH_FILES:
        for shown, _ in inputs.files[MAX_BATCH_FILES:]:
            inputs.errors.append((shown, f"Not scored: one batch takes at most {MAX_BATCH_FILES} images."))
        inputs.files = inputs.files[:MAX_BATCH_FILES]
    return inputs
