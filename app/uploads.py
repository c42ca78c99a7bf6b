"""Upload safety for the batch and evaluation tabs: image files and zips in, with hard limits on count and size
(zip bombs, huge archives), no path traversal, OS clutter skipped, and every rejected input named with its reason."""

from __future__ import annotations

import re
import tempfile
import zipfile
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
    """OS clutter that is never a photo: macOS resource forks (``__MACOSX/``, ``._x.jpg``), ``.DS_Store``, dot files."""
    return any(part.startswith(".") or part == "__MACOSX" for part in PurePosixPath(member_name).parts)


def _folder_name(parts: Sequence[str]) -> str:
    """One safe file or folder name for a member's path parts (``faces/A`` -> ``faces_A``): no separators, no dots."""
    return "_".join(re.sub(r"[^\w-]+", "_", part).strip("_") or "_" for part in parts)


def unzip(archive: Path, folder: Path, shown: str, inputs: BatchInputs, identity_folders: bool = False) -> None:
    """Extract image members with hard limits on count and size (zip bombs, huge archives), no path traversal.

    With ``identity_folders`` each image lands in ``folder/<its directory path, as one name>/`` (the layout
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
            for number, member in enumerate(members):
                name = f"{shown}/{member.filename}"
                if Path(member.filename).suffix.lower() not in IMAGE_SUFFIXES:
                    inputs.errors.append((name, "Not an image file (by its extension); skipped."))
                    continue
                if member.file_size > MAX_ZIP_MEMBER_BYTES:
                    inputs.errors.append((name, f"Too large ({member.file_size / 2**20:.0f} MiB unpacked); the limit "
                                                f"is {MAX_ZIP_MEMBER_BYTES / 2**20:.0f} MiB per file."))
                    continue
                target = folder / f"{number:05d}{Path(member.filename).suffix.lower()}"
                if identity_folders:
                    member_path = PurePosixPath(member.filename.replace("\\", "/"))
                    if len(member_path.parts) < 2:
                        inputs.errors.append((name, "Not inside an identity folder; skipped."))
                        continue
                    # Keep the file's name readable in the report's per-file CSV; the number keeps it unique.
                    target = (folder / _folder_name(member_path.parts[:-1])
                              / f"{number:05d}_{_folder_name([member_path.stem])}{member_path.suffix.lower()}")
                    target.parent.mkdir(exist_ok=True)
                # Never trust the declared sizes: stop reading once the real output passes the limits.
                written = 0
                with bundle.open(member) as source, open(target, "wb") as sink:
                    while chunk := source.read(1 << 20):
                        written += len(chunk)
                        if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                            break
                        sink.write(chunk)
                if written > MAX_ZIP_MEMBER_BYTES or inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                    target.unlink(missing_ok=True)
                    inputs.errors.append((name, "Unpacks to more than the size limit; skipped (possible zip bomb)."))
                    if inputs.unpacked + written > MAX_ZIP_TOTAL_BYTES:
                        return
                    continue
                inputs.unpacked += written
                inputs.files.append((name, target))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as error:
        # RuntimeError: encrypted members; NotImplementedError: unsupported compression.
        inputs.errors.append((shown, f"Cannot read the zip: {error}."))


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
