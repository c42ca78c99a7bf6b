"""The bundled demo set of the Evaluate tab and ``attn-fiqa eval``: real identities, synthetic degradations.

``assets/demo_set/`` holds 112x112 aligned crops of the Face Research Lab London Set (CC BY 4.0; 102 people, two
studio photos each; credit in ``assets/demo_set/CREDITS.md``), built by ``scripts/make_demo_set.py``. One photo of
each person is degraded at a seeded random kind and strength (:func:`demo_plan`), so every genuine pair holds one
damaged face and an EDC can show whether discarding low-quality pairs removes the recognition failures.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_core.faces.degradations import DEGRADATIONS

DEMO_SEED = 2026
DEMO_STRENGTH_RANGE = (0.15, 1.0)
# 100 impostor pairs per genuine pair: 102 genuine and 10,200 impostor pairs, enough to resolve FMR 1e-4.
DEMO_IMPOSTORS_PER_GENUINE = 100.0
DEMO_NAME = "the London demo set (real identities, synthetic degradations)"
DEMO_CREDIT = ("Demo photos: Face Research Lab London Set, DeBruine & Jones (2017), figshare, "
               "doi:10.6084/m9.figshare.5047666.v5, CC BY 4.0; aligned, downscaled and one of each pair degraded by us.")
DEMO_DESCRIPTION = ("102 people of the Face Research Lab London Set (CC BY 4.0), two studio photos each, one of them "
                    "degraded at a seeded random kind and strength: real identities, synthetic degradations")


def demo_set_dir() -> Path:
    """Where the bundled crops lie (``assets/demo_set``)."""
    from attn_core.paths import ASSETS_DIR

    return ASSETS_DIR / "demo_set"


@dataclass(frozen=True)
class DemoPlan:
    """What happens to one person's pair: which photo (0 or 1, in name order) is degraded, how, and how hard."""

    identity: str
    degraded_index: int
    degradation: str
    strength: float
    seed: int


def demo_plan(identities: Sequence[str], seed: int = DEMO_SEED) -> list[DemoPlan]:
    """One seeded draw per identity, in the given order: the photo, the degradation kind (uniform over every
    registered degradation) and the strength (uniform in :data:`DEMO_STRENGTH_RANGE`, rounded to 0.01)."""
    rng = np.random.default_rng(seed)
    names = sorted(DEGRADATIONS)
    low, high = DEMO_STRENGTH_RANGE
    plans = []
    for identity in identities:
        index = int(rng.integers(2))
        kind = names[int(rng.integers(len(names)))]
        strength = round(float(rng.uniform(low, high)), 2)
        plans.append(DemoPlan(identity, index, kind, strength, int(rng.integers(2**31))))
    return plans


def demo_manifest() -> list[dict[str, str]]:
    """The bundled crops: one row per file (file, identity, source, degradation, strength), from ``manifest.csv``."""
    path = demo_set_dir() / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the bundled demo set is missing ({path.parent.name}/manifest.csv under the assets "
                                "folder): rebuild it with scripts/make_demo_set.py or reinstall attn-fiqa")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def demo_set_folder(tmp_dir: str | Path) -> Path:
    """Lay out the bundled demo set as ``<tmp_dir>/demo_set/<identity>/<crop>`` and return that folder.

    The crops are stored flat (so a wheel can install them as one data folder); ``manifest.csv`` names each one's
    identity. The folder is ready for :func:`attn_core.eval.run_eval`: pass
    ``impostors_per_genuine=DEMO_IMPOSTORS_PER_GENUINE`` to resolve FMR 1e-4.
    """
    source = demo_set_dir()
    root = Path(tmp_dir) / "demo_set"
    for row in demo_manifest():
        name = Path(row["file"]).name  # the manifest is ours, but a path in it must not leave the folder
        folder = root / Path(row["identity"]).name
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / name).is_file():
            shutil.copyfile(source / name, folder / name)
    return root
