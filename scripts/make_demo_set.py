"""Build the Evaluate tab's bundled demo set (assets/demo_set/) from the Face Research Lab London Set.

    python scripts/make_demo_set.py [--source ../shared/data/london-set] [--out assets/demo_set] [--seed 2026]

Every identity folder of the source (two studio photos each: neutral ``NNN_03`` and smiling ``NNN_08``) gives two
112x112 ArcFace-aligned crops, stored flat (``manifest.csv`` names each crop's identity) (the project's detector and alignment, ``attn_core.faces.extract_faces``):
the crop is what the quality models and the SFace matcher take, so the demo needs no detection and stays small. One
photo of each pair, chosen by the seed, is degraded with a seeded random kind (``attn_core.faces.degradations``) at a
seeded random strength in [0.15, 1]; its file name says which (``001_08_motion_blur_0.62.webp``). Crops are stored as
lossless WebP, so storage adds no damage of its own. ``manifest.csv`` lists every file with its degradation.
The set is "real identities, synthetic degradations": studio photos are all good, so every failure is ours.

Deterministic: the same source, seed and library give byte-identical files (checked by tests/test_demo_set.py on
the manifest and a rebuild of a few folders when the source is present).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attn_core.eval.demo import DEMO_SEED, DEMO_STRENGTH_RANGE, demo_plan
from attn_core.faces import extract_faces
from attn_core.faces.degradations import degrade

SOURCE_CANDIDATES = [base / "shared" / "data" / "london-set" for base in (ROOT.parent, ROOT.parent.parent)]

CREDIT = """# Demo set: Face Research Lab London Set (real identities, synthetic degradations)

204 face crops of 102 people (two photos each), made by `scripts/make_demo_set.py` from the Face Research Lab
London Set, front views, neutral (`_03`) and smiling (`_08`).

**Credit (CC BY 4.0):** DeBruine, L. & Jones, B. (2017). *Face Research Lab London Set*. figshare.
doi:[10.6084/m9.figshare.5047666.v5](https://doi.org/10.6084/m9.figshare.5047666.v5).
Licence: Creative Commons Attribution 4.0 International, <https://creativecommons.org/licenses/by/4.0/>.

**Changes made (as the licence asks us to say):** downscaled from 1350 to 450 px; each face detected and aligned
to a 112x112 crop (ArcFace 5-point template); one photo of each person degraded synthetically (blur, noise,
compression, exposure, low resolution or occlusion, at a seeded random strength; the file name and
`manifest.csv` say which); stored as lossless WebP. The degradations are ours, not the photographers'.

Used only as the bundled demo of the Evaluate tab and `attn-fiqa eval`. No biometric template derived from these
photos is stored in this repository.
"""


def make_crop(photo: Path, degradation: str, strength: float, seed: int) -> np.ndarray:
    """The 112x112 aligned crop of ``photo``'s largest face, degraded when ``degradation`` is not empty."""
    crop = extract_faces(photo)[0].aligned
    return degrade(crop, degradation, strength, seed=seed) if degradation else crop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=next(
        (p for p in SOURCE_CANDIDATES if p.is_dir()), SOURCE_CANDIDATES[0]),
        help="the London set's identity folders (default ../shared/data/london-set beside the checkout)")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "demo_set")
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    args = parser.parse_args(argv)
    identities = sorted(p for p in args.source.iterdir() if p.is_dir())
    if not identities:
        parser.error(f"no identity folders in {args.source}")
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    rows = []
    for folder, plan in zip(identities, demo_plan([p.name for p in identities], args.seed)):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
        if len(photos) != 2:
            raise SystemExit(f"{folder}: expected two photos, found {len(photos)}")
        for index, photo in enumerate(photos):
            name, strength = (plan.degradation, plan.strength) if index == plan.degraded_index else ("", 0.0)
            crop = make_crop(photo, name, strength, plan.seed)
            stem = photo.stem + (f"_{name}_{strength:.2f}" if name else "")
            target = args.out / f"{stem}.webp"
            Image.fromarray(crop).save(target, format="WEBP", lossless=True, quality=100, method=6)
            rows.append({"file": target.name, "identity": folder.name, "source": photo.name,
                         "degradation": name or "none", "strength": f"{strength:.2f}"})
    with (args.out / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "CREDITS.md").write_text(CREDIT)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{len(rows)} crops of {len(identities)} people in {args.out} ({size / 1e6:.2f} MB); seed {args.seed}; "
          f"strengths in [{DEMO_STRENGTH_RANGE[0]:g}, {DEMO_STRENGTH_RANGE[1]:g}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
