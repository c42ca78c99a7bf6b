"""Verification pairs: from identity folders (every genuine pair plus seeded impostors) or a pairs CSV."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

from attn_core.faces import IMAGE_SUFFIXES

__all__ = ["PAIRS_CSV_COLUMNS", "Pair", "load_pairs", "make_pairs_from_folders", "read_pairs_csv"]

Pair = tuple[Path, Path, bool]


def make_pairs_from_folders(
    root: str | Path, seed: int = 0, impostors_per_genuine: float = 10.0
) -> list[tuple[Path, Path, bool]]:
    """Verification pairs from ``root/<identity>/<image>``: every genuine pair plus seeded random impostors.

    Only image files directly inside each identity folder count (extensions in ``IMAGE_SUFFIXES``, hidden
    files skipped); folders and files are taken in sorted order. Genuine pairs: all sum_i C(n_i, 2) within-identity
    combinations. Impostor pairs: ``round(impostors_per_genuine * n_genuine)`` distinct unordered cross-identity
    pairs drawn uniformly without replacement (all of them if fewer exist). An FMR of 1e-3 is only resolved
    with well over 1000 impostor pairs; choose ``impostors_per_genuine`` accordingly.
    Returns genuine pairs first, then impostors, each in sorted path order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"pair folder {root} does not exist or is not a folder")
    if impostors_per_genuine < 0:
        raise ValueError(f"impostors_per_genuine must be >= 0, got {impostors_per_genuine}")
    identities: list[list[Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(
            p for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if images:
            identities.append(images)
    if len(identities) < 2:
        raise ValueError(f"{root} needs at least two identity sub-folders with images, found {len(identities)}")

    pairs: list[tuple[Path, Path, bool]] = [
        (a, b, True) for images in identities for a, b in itertools.combinations(images, 2)
    ]
    n_genuine = len(pairs)
    if n_genuine == 0:
        raise ValueError(f"no identity folder under {root} has two or more images, so there are no genuine pairs")

    paths = [path for images in identities for path in images]
    labels = np.concatenate([np.full(len(images), index) for index, images in enumerate(identities)])
    sizes = np.array([len(images) for images in identities], dtype=np.int64)
    n_cross = int((sizes.sum() ** 2 - np.sum(sizes**2)) // 2)
    wanted = min(int(round(impostors_per_genuine * n_genuine)), n_cross)
    rng = np.random.default_rng(seed)
    chosen: set[tuple[int, int]] = set()
    if wanted > n_cross // 2:
        # Dense request: enumerate every cross-identity pair and pick without replacement.
        first, second = np.triu_indices(len(paths), k=1)
        cross = labels[first] != labels[second]
        first, second = first[cross], second[cross]
        for k in rng.choice(first.size, size=wanted, replace=False):
            chosen.add((int(first[k]), int(second[k])))
    else:
        # Sparse request: rejection sampling never materialises the O(N^2) candidate list.
        while len(chosen) < wanted:
            draws = rng.integers(0, len(paths), size=(2 * (wanted - len(chosen)) + 16, 2))
            for i, j in draws:
                if labels[i] != labels[j]:
                    chosen.add((int(min(i, j)), int(max(i, j))))
                    if len(chosen) == wanted:
                        break
    pairs.extend((paths[i], paths[j], False) for i, j in sorted(chosen))
    return pairs


_TRUE_WORDS = frozenset({"1", "true", "yes", "y", "genuine", "same", "mated"})
_FALSE_WORDS = frozenset({"0", "false", "no", "n", "impostor", "different", "non-mated", "nonmated"})
PAIRS_CSV_COLUMNS = ("path_a", "path_b", "same_identity")


def read_pairs_csv(path: str | Path, check_exists: bool = True) -> list[tuple[Path, Path, bool]]:
    """Pairs from a CSV with header ``path_a,path_b,same_identity``; relative paths resolve against its folder.

    ``same_identity`` accepts 1/0, true/false, yes/no, genuine/impostor (case-insensitive). Any bad row raises
    ValueError naming the file and line; with ``check_exists`` missing image files are reported together.
    """
    path = Path(path)
    base = path.parent
    pairs: list[tuple[Path, Path, bool]] = []
    missing: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in (reader.fieldnames or [])]
        absent = [column for column in PAIRS_CSV_COLUMNS if column not in header]
        if absent:
            raise ValueError(
                f"{path}: the first row must be a header with columns {','.join(PAIRS_CSV_COLUMNS)}; "
                f"missing {', '.join(absent)} (found: {','.join(header) or 'nothing'})"
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row:
                raise ValueError(f"{where}: more fields than the header has ({len(header)})")
            values = {column: (row.get(column) or "").strip() for column in PAIRS_CSV_COLUMNS}
            if not any(values.values()) and not any((v or "").strip() for v in row.values()):
                continue  # blank line
            for column in ("path_a", "path_b"):
                if not values[column]:
                    raise ValueError(f"{where}: empty {column}")
            same = values["same_identity"].lower()
            if same in _TRUE_WORDS:
                is_genuine = True
            elif same in _FALSE_WORDS:
                is_genuine = False
            else:
                raise ValueError(
                    f"{where}: same_identity must be 1/0, true/false, yes/no or genuine/impostor, "
                    f"got {values['same_identity']!r}"
                )
            path_a, path_b = (base / values["path_a"], base / values["path_b"])
            if check_exists:
                missing.extend(f"{where}: {p}" for p in (path_a, path_b) if not p.is_file())
            pairs.append((path_a, path_b, is_genuine))
    if missing:
        shown = "\n  ".join(missing[:10])
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise FileNotFoundError(f"{len(missing)} image file(s) listed in {path} do not exist:\n  {shown}{more}")
    if not pairs:
        raise ValueError(f"{path}: no pairs after the header")
    return pairs


def load_pairs(data: str | Path | Sequence[Pair], *, seed: int = 0, impostors_per_genuine: float = 10.0
               ) -> tuple[list[Pair], str]:
    """Pairs from an identity folder, a pairs CSV (any file) or a list; plus a description of the source."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.is_file():  # not a folder: a pairs CSV
            # Missing files are not fatal here: they are reported with the unreadable ones and their pairs dropped.
            return read_pairs_csv(path, check_exists=False), f"pairs CSV {path}"
        pairs = make_pairs_from_folders(path, seed=seed, impostors_per_genuine=impostors_per_genuine)
        return pairs, f"identity folders under {path} (all genuine pairs, {impostors_per_genuine:g} seeded impostors per genuine, seed {seed})"
    pairs = [(Path(a), Path(b), bool(g)) for a, b, g in data]
    if not pairs:
        raise ValueError("no pairs given")
    return pairs, f"{len(pairs)} pairs given by the caller"


