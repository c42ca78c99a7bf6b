"""The attention lab (docs/DESIGN.md 1b): q and k of every block of one face from one forward pass, the teaching
views derived from them (``attention``) and their figures (``figures``); what a degradation does to each head
(``head_change``)."""

from attn_core.lab.attention import AttentionLab, HeadStats, capture_lab, explain_record, softmax_lesson
from attn_core.lab.figures import (
    block_scores_figure,
    face_grid_image,
    head_stats_figure,
    matrix_figure,
    model_view_figure,
    offsets_figure,
    qk_terms_figure,
    row_figure,
)
from attn_core.lab.head_change import HeadChange, head_change_figure, head_changes
from attn_core.lab.pictures import (
    face_grid_picture,
    matrix_picture,
    model_view_picture,
    qk_terms_picture,
    token_picture,
)

__all__ = [
    "AttentionLab", "HeadChange", "HeadStats", "head_change_figure", "head_changes", "block_scores_figure", "capture_lab", "explain_record", "face_grid_image",
    "head_stats_figure", "matrix_figure", "model_view_figure", "offsets_figure", "qk_terms_figure", "row_figure",
    "softmax_lesson", "face_grid_picture", "matrix_picture", "model_view_picture", "qk_terms_picture",
    "token_picture",
]
