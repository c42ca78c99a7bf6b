"""What value is good, in the app: the saved reference sets (``attn-fiqa reference build``) to pick from, a score's
percentile and 0-100 value against the chosen one (or, with none chosen, against the few bundled example faces),
and the threshold a reference holds. References are read from the server's own home folder, by the names it lists;
a request names one, never a path."""

from __future__ import annotations

import math
from typing import Any

import gradio as gr

from app.errors import user_errors
from attn_core.scoring import (
    Reference,
    ReferenceError,
    list_references,
    load_reference,
    new_reference,
)

NO_REFERENCE = ""


def reference_choices() -> list[tuple[str, str]]:
    """(label, name) of every usable saved reference, after "none" (the bundled examples)."""
    choices = [("none: the bundled example faces (very few)", NO_REFERENCE)]
    for name, reference, _ in list_references():
        if reference is not None:
            settings = reference.settings
            choices.append((f"{name}: {reference.faces} faces, {settings['backbone']}, block {settings['block']}"
                            + (f", threshold {reference.threshold_value:+.4f}" if reference.threshold else ""), name))
    return choices


def reference_picker(elem_id: str, info: str) -> gr.Dropdown:
    # allow_custom_value: references built while the app runs are valid names; the handlers check every name
    # against the saved list (chosen_reference), never open a path a request sends.
    return gr.Dropdown(reference_choices(), value=NO_REFERENCE, label="Reference set", info=info, elem_id=elem_id,
                       allow_custom_value=True)


@user_errors
def refresh_choices(current: str | None = NO_REFERENCE):
    """The picker's list again (references built while the app runs); the choice kept while it still exists."""
    choices = reference_choices()
    return gr.update(choices=choices, value=current if current in {name for _, name in choices} else NO_REFERENCE)


def chosen_reference(name: str | None) -> Reference | None:
    """The saved reference of that name (only names the server lists), or None for "none"."""
    if not name:
        return None
    if name not in {listed for listed, reference, _ in list_references() if reference is not None}:
        raise ValueError(f"There is no usable saved reference named {name!r}; pick one from the list (build one with "
                         f"`attn-fiqa reference build FACES --name NAME`).")
    return load_reference(name)


def _settings(details: dict[str, Any]) -> dict[str, Any]:
    """The settings of an Inspect result, from its details (what a reference must share)."""
    heads, head_scores = list(details["heads"]), list(details["head_scores"])
    return {"backbone": str(details["backbone"]), "weights": str(details["weights"]),
            "weights_sha256": str(details["weights_sha256"]), "block": int(details["block"]),
            "heads": "all" if sorted(heads) == list(range(len(head_scores))) else sorted(int(h) for h in heads),
            "aggregation": str(details["aggregation"]), "tokens": str(details["tokens"]),
            "precision": str(details["precision"])}


def standing_text(reference: Reference, score: float) -> str:
    standing = reference.standing_of(score)
    verdict = "" if standing.passed is None else (
        f" **{'Passes' if standing.passed else 'Below'}** the reference's threshold {standing.threshold:+.4f}"
        f" ({reference.threshold.get('goal', 'saved with it')}).")
    return (f"**Percentile {standing.percentile:.1f}** (share of the reference's faces scoring lower), **0-100 value "
            f"{standing.quality_0_100:.1f}** (mid-rank CDF x 100), against the reference **{reference.name}** "
            f"({reference.faces} faces, sha256 {reference.sha256[:12]}).{verdict}")


@user_errors
def reference_standing(details: dict[str, Any] | None, name: str | None = NO_REFERENCE) -> str:
    """Percentile and 0-100 value of the Inspect score against the chosen reference, or the bundled examples."""
    if not details or "score" not in details:
        return ""
    try:
        score = float(details["score"])
        settings = _settings(details)
        examples = [float(s) for s in details.get("example_scores") or []]
    except (KeyError, TypeError, ValueError):
        raise ValueError("These details do not come from an Inspect result; score a photo first.") from None
    if not math.isfinite(score):
        raise ValueError("The score is not a finite number; score a photo first.")
    reference = chosen_reference(name)
    if reference is None:
        if not examples:
            return ("No reference chosen, and no example faces to compare with. Build a reference of your own faces "
                    "(`attn-fiqa reference build FACES --name NAME`) and pick it here.")
        fallback = new_reference("bundled-examples", settings, examples)
        standing = fallback.standing_of(score)
        return (f"Percentile {standing.percentile:.0f}, 0-100 value {standing.quality_0_100:.0f} against only the "
                f"**{len(examples)} bundled example faces** (each moves the value by {100 / len(examples):.0f} points: "
                f"a rough guide, not a reference). Build a reference of faces you call typical (`attn-fiqa reference "
                f"build FACES --name NAME`, same backbone and settings) and pick it here.")
    try:
        reference.check(settings, "this face's score")
    except ReferenceError as error:
        return f"**{error}**"
    return standing_text(reference, score)
