"""ATTN-FIQA: training-free face image quality from the pre-softmax attention of a face-recognition ViT.

    import attn_core

    model = attn_core.create_model()                     # the default face-trained backbone (downloaded on first use)
    (result,) = model.score_image("photo.jpg")           # detect, align, score
    result.score, result.patch_map                       # higher = better; the map decomposes the score exactly
    overlay = attn_core.show_map_on_image(result)        # the map over the aligned face, RGB uint8
    attn_core.list_backbones("cvlface")                  # the registry

The public names load lazily, so ``import attn_core`` stays cheap until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "create_model": "attn_core.api",
    "FaceQualityModel": "attn_core.api",
    "ScoreOptions": "attn_core.api",
    "QualityResult": "attn_core.quality",
    "AttentionCapture": "attn_core.capture",
    "list_backbones": "attn_core.registry",
    "extract_faces": "attn_core.faces",
    "degrade": "attn_core.degrade",
    "show_map_on_image": "attn_core.render",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from attn_core.api import FaceQualityModel, ScoreOptions, create_model
    from attn_core.capture import AttentionCapture
    from attn_core.degrade import degrade
    from attn_core.faces import extract_faces
    from attn_core.quality import QualityResult
    from attn_core.registry import list_backbones
    from attn_core.render import show_map_on_image


def __getattr__(name: str) -> Any:  # PEP 562: resolve a public name on first use
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attn_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
