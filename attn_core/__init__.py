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

from typing import TYPE_CHECKING, Any

__all__ = ["AttentionCapture", "FaceQualityModel", "QualityResult", "ScoreOptions", "create_model", "degrade",
           "extract_faces", "list_backbones", "show_map_on_image"]

if TYPE_CHECKING:
    from attn_core.faces import degrade, extract_faces
    from attn_core.scoring import (
        AttentionCapture,
        FaceQualityModel,
        QualityResult,
        ScoreOptions,
        create_model,
    )
    from attn_core.viz import show_map_on_image
    from attn_core.zoo import list_backbones


def __getattr__(name: str) -> Any:  # PEP 562: a public name is imported on first use, so `import attn_core` is cheap
    if name in ("AttentionCapture", "FaceQualityModel", "QualityResult", "ScoreOptions", "create_model"):
        from attn_core import scoring as home
    elif name in ("degrade", "extract_faces"):
        from attn_core import faces as home
    elif name == "list_backbones":
        from attn_core import zoo as home
    elif name == "show_map_on_image":
        from attn_core import viz as home
    else:
        raise AttributeError(f"module 'attn_core' has no attribute {name!r}")
    value = getattr(home, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
