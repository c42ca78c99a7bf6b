"""Does the score predict recognition errors? Error-versus-Discard curves, degradation sweeps and their reports.

``demo``: the bundled demo set (real identities, synthetic degradations). ``edc``: the EDC maths, rank correlations and ROC AUC. ``pairs``: verification pairs from identity folders or a CSV.
``matcher``: the independent recognisers (SFace, or a backbone's embedding head). ``cache``: per-file embeddings
and scores on disk. ``measure``: quality methods, matcher and per-file measurements shared by both evaluations.
``evaluate``: :func:`run_eval`. ``threshold``: a goal (target FNMR, or a fraction to discard) read off the EDC as a
score threshold. ``sweep``: :func:`sweep_face` and :func:`run_sweep`. ``reports``: the one writer of
plots, JSON, Markdown and CSV.
"""

from attn_core.eval.demo import DEMO_CREDIT, DEMO_IMPOSTORS_PER_GENUINE, DEMO_NAME, demo_set_folder
from attn_core.eval.edc import (
    THRESHOLD_MODE_SOURCES,
    THRESHOLD_MODE_WORDS,
    EDCCurve,
    edc,
    edc_table_markdown,
    fmr_resolution_note,
    format_fmr,
    kendall,
    random_baseline,
    roc_auc,
    spearman,
    undefined_reason,
)
from attn_core.eval.evaluate import (
    DEFAULT_FMRS,
    THRESHOLD_MODES,
    EvalReport,
    discard_grid,
    run_eval,
)
from attn_core.eval.matcher import Matcher, available_matchers, cosine, get_matcher
from attn_core.eval.measure import (
    BASELINES,
    EXAMPLE_IDENTITIES,
    RANDOM,
    QualityMethod,
    demo_identity_folder,
    load_quality_methods,
    resolve_matcher,
)
from attn_core.eval.pairs import (
    Pair,
    load_pairs,
    make_pairs_from_folders,
    read_pairs_csv,
)
from attn_core.eval.reports import write_threshold_report
from attn_core.eval.sweep import (
    DEFAULT_STRENGTHS,
    FaceSweep,
    SweepReport,
    crop_landmarks,
    run_sweep,
    sweep_face,
)
from attn_core.eval.threshold import (
    EvalPairs,
    GoalThreshold,
    goals_from_report,
    save_threshold,
    threshold_for_goal,
)

__all__ = [
    "BASELINES", "DEFAULT_FMRS", "DEMO_CREDIT", "DEMO_IMPOSTORS_PER_GENUINE", "DEMO_NAME", "demo_set_folder", "fmr_resolution_note",
    "undefined_reason", "THRESHOLD_MODE_SOURCES", "THRESHOLD_MODE_WORDS", "DEFAULT_STRENGTHS", "EXAMPLE_IDENTITIES", "RANDOM", "THRESHOLD_MODES",
    "EDCCurve", "EvalReport", "FaceSweep", "Matcher", "Pair", "QualityMethod", "SweepReport",
    "available_matchers", "cosine", "crop_landmarks", "demo_identity_folder", "discard_grid", "edc",
    "edc_table_markdown", "format_fmr", "get_matcher", "kendall", "load_pairs", "load_quality_methods",
    "make_pairs_from_folders", "random_baseline", "read_pairs_csv", "resolve_matcher", "roc_auc", "run_eval",
    "run_sweep", "spearman", "sweep_face",
    "EvalPairs", "GoalThreshold", "goals_from_report", "save_threshold", "threshold_for_goal", "write_threshold_report",
]
