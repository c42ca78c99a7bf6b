"""Scoring: the pre-softmax attention of one block, captured, summarised into the score and its patch map.

``capture``: :class:`AttentionCapture`, the query/key capture of one block of any supported ViT. ``quality``: the
method (docs/DESIGN.md 1): per-head scores, aggregation, the patch map that decomposes the score, precision.
``model``: :class:`FaceQualityModel`, the one scoring path behind the CLI, the API, the app and the Ray engine.
``reference``: reference sets (what value is good?): a score's percentile and 0-100 value against faces the user
chose, and the threshold saved with them.
"""

from attn_core.scoring.capture import AttentionCapture, QueryKey
from attn_core.scoring.model import (
    FaceQualityModel,
    FileScore,
    ScoreOptions,
    create_model,
    expand_paths,
)
from attn_core.scoring.quality import (
    AGGREGATIONS,
    PRECISION_CHOICES,
    PRECISIONS,
    TOKEN_MODES,
    AttentionStats,
    QualityResult,
    auto_precision,
    resolve_precision,
    score_faces,
)
from attn_core.scoring.reference import (
    Reference,
    ReferenceError,
    Standing,
    build_reference,
    list_references,
    load_reference,
    model_settings,
    new_reference,
    references_home,
    remove_reference,
    result_settings,
    save_reference,
)

__all__ = [
    "AGGREGATIONS", "PRECISIONS", "PRECISION_CHOICES", "TOKEN_MODES", "AttentionCapture", "AttentionStats",
    "FaceQualityModel", "FileScore", "QualityResult", "QueryKey", "Reference", "ReferenceError", "ScoreOptions",
    "Standing", "auto_precision", "build_reference", "create_model", "expand_paths", "list_references",
    "load_reference", "model_settings", "new_reference", "references_home", "remove_reference", "resolve_precision",
    "result_settings", "save_reference", "score_faces",
]
