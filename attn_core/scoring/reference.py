"""What value is good? A reference set: the scores of faces the user calls typical, with everything that produced them.

The score is signed, unnormalised and on another scale for every backbone, block and head selection, so a number
means something only against scores made the same way. A :class:`Reference` keeps the sorted scores of a set of
faces with their settings (backbone, weights and their sha256, block, heads, aggregation, tokens, precision), the
number of faces and the date, as a small JSON file under ``<home>/references/NAME.json``. Against it, a score has:

- ``percentile`` = 100 * (number of reference scores strictly lower) / n: the share of reference faces that score
  lower (a tie counts as not lower);
- ``quality_0_100`` = 100 * (lower + 0.5 * equal) / n, clipped to [0, 100]: the mid-rank empirical CDF (it differs
  from the percentile only when the score ties reference scores);
- ``passed`` = score >= the reference's threshold, when one was saved into it (``attn-fiqa eval --target-fnmr``).

A reference applies only to results of the same weights and settings: anything else is one :class:`ReferenceError`.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from attn_core.paths import attn_fiqa_home

__all__ = ["Reference", "ReferenceError", "Standing", "build_reference", "list_references", "load_reference",
           "model_settings", "reference_path", "references_home", "remove_reference", "result_settings",
           "save_reference"]

FORMAT = "attn-fiqa-reference"
VERSION = 1
SETTINGS_KEYS = ("backbone", "weights", "weights_sha256", "block", "heads", "aggregation", "tokens", "precision")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_FILE_BYTES = 32 * 2**20  # a reference of a million faces is about 20 MB; anything larger is not ours


class ReferenceError(ValueError):
    """A reference that is missing, invalid, or made with other weights or settings: one sentence for the user."""


def references_home() -> Path:
    """Where references live: ``<home>/references`` (``$ATTN_FIQA_HOME``, default ``~/.cache/attn_fiqa``)."""
    return attn_fiqa_home() / "references"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ReferenceError(f"{name!r} is not a usable reference name: use 1-64 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit (e.g. enrolment-2026).")
    return name


def reference_path(name: str) -> Path:
    return references_home() / f"{check_name(name)}.json"


def _heads_value(heads: Iterable[int] | None, num_heads: int) -> str | list[int]:
    """"all" when every head is selected (in any order), else the sorted head numbers (aggregations ignore order)."""
    if heads is None:
        return "all"
    selected = sorted(int(h) for h in heads)
    return "all" if not selected or selected == list(range(num_heads)) else selected


def result_settings(result: Any) -> dict[str, Any]:
    """The settings that made a :class:`~attn_core.scoring.quality.QualityResult` (what a reference must share)."""
    return {"backbone": result.backbone, "weights": result.weights, "weights_sha256": result.weights_sha256,
            "block": int(result.block), "heads": _heads_value(result.heads, len(result.head_scores)),
            "aggregation": result.aggregation, "tokens": result.tokens, "precision": result.precision}


def model_settings(model: Any, options: Any) -> dict[str, Any]:
    """The settings a :class:`~attn_core.scoring.model.FaceQualityModel` will score with under ``options``
    (:class:`~attn_core.scoring.model.ScoreOptions`): checked against a reference before any file is scored."""
    backbone = model.backbone
    return {"backbone": model.spec.name, "weights": backbone.weights_name, "weights_sha256": backbone.weights_sha256,
            "block": int(backbone.block_index(options.block)), "heads": _heads_value(options.heads, model.spec.num_heads),
            "aggregation": options.aggregation, "tokens": options.tokens, "precision": model.precision}


def _differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    keys = [k for k in SETTINGS_KEYS if k != "weights"]
    if not expected["weights_sha256"] and not actual["weights_sha256"]:
        keys.append("weights")  # random weights have no hash: their name ("random (seed 0)") is their identity
    return [f"{key} {_shown(expected[key])} here, {_shown(actual[key])} there" for key in keys
            if expected[key] != actual[key]]


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if value == "":
        return "none (random weights)"
    return str(value)


@dataclass(frozen=True)
class Standing:
    """Where one score stands against a reference."""

    score: float
    percentile: float  # 0-100: share of reference faces scoring strictly lower
    quality_0_100: float  # 0-100: mid-rank empirical CDF x 100
    passed: bool | None  # score >= threshold; None when the reference has no threshold
    reference: str
    reference_sha256: str
    threshold: float | None


@dataclass(frozen=True)
class Reference:
    """A named score distribution with the settings that produced it (and optionally a threshold)."""

    name: str
    settings: dict[str, Any]
    scores: np.ndarray  # sorted ascending, float64
    created: str
    files: int = 0  # files that gave at least one face
    skipped: int = 0  # files that were reported and left out
    threshold: dict[str, Any] | None = None  # {"value": float, ...how it was chosen}
    sha256: str = field(default="", compare=False)  # of the JSON file it was read from (or would be written as)

    @property
    def faces(self) -> int:
        return int(self.scores.size)

    @property
    def threshold_value(self) -> float | None:
        return None if self.threshold is None else float(self.threshold["value"])

    def percentile(self, score: float) -> float:
        """100 * (reference scores strictly below ``score``) / n."""
        return 100.0 * int(np.searchsorted(self.scores, score, side="left")) / self.faces

    def quality_0_100(self, score: float) -> float:
        """100 * (lower + 0.5 * equal) / n, clipped to [0, 100]: the mid-rank empirical CDF."""
        lower = int(np.searchsorted(self.scores, score, side="left"))
        equal = int(np.searchsorted(self.scores, score, side="right")) - lower
        return float(np.clip(100.0 * (lower + 0.5 * equal) / self.faces, 0.0, 100.0))

    def check(self, settings: dict[str, Any], what: str = "these results") -> None:
        """Refuse settings other than the reference's own: one sentence naming every difference."""
        different = _differences(self.settings, settings)
        if different:
            raise ReferenceError(
                f"The reference '{self.name}' does not apply to {what}: it was built with other weights or settings "
                f"({'; '.join(different)}). A score means something only against scores made the same way: build a "
                f"reference with these settings (attn-fiqa reference build FACES --name NEW ...), or choose one that "
                f"matches.")

    def standing(self, result: Any) -> Standing:
        """Percentile, 0-100 value and pass/fail of a QualityResult (checked against the reference's settings)."""
        self.check(result_settings(result), "this result")
        return self.standing_of(result.score)

    def standing_of(self, score: float) -> Standing:
        """The same for a bare score whose settings the caller has already checked (:meth:`check`)."""
        threshold = self.threshold_value
        return Standing(float(score), self.percentile(score), self.quality_0_100(score),
                        None if threshold is None else bool(score >= threshold), self.name, self.sha256, threshold)

    def with_threshold(self, threshold: dict[str, Any]) -> Reference:
        value = threshold.get("value")
        if not _is_number(value):
            raise ReferenceError(f"A threshold needs a finite number as its value, not {value!r}.")
        updated = replace(self, threshold=dict(threshold, value=float(value)))
        return replace(updated, sha256=_digest(updated.to_json()))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "name": self.name, "created": self.created,
                "settings": dict(self.settings), "faces": self.faces, "files": self.files, "skipped": self.skipped,
                "threshold": self.threshold, "scores": [float(s) for s in self.scores]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    def summary(self) -> dict[str, Any]:
        """Everything but the scores, plus their quantiles: what ``attn-fiqa reference show`` prints."""
        quantiles = {f"p{q}": float(np.percentile(self.scores, q)) for q in (0, 5, 25, 50, 75, 95, 100)}
        info = {k: v for k, v in self.to_dict().items() if k != "scores"}
        return {**info, "sha256": self.sha256, "score_quantiles": quantiles}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def new_reference(name: str, settings: dict[str, Any], scores: Iterable[float], *, files: int = 0, skipped: int = 0,
                  created: str | None = None) -> Reference:
    """A reference from scores made with ``settings`` (see :func:`result_settings`)."""
    values = np.sort(np.asarray(list(scores), dtype=np.float64))
    if values.size == 0:
        raise ReferenceError(f"The reference '{name}' has no faces: nothing was written.")
    reference = Reference(check_name(name), dict(settings), values,
                          created or datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          files, skipped)
    validated = _validated(json.loads(reference.to_json()), name)
    return replace(validated, sha256=_digest(reference.to_json()))


def build_reference(model: Any, paths: Iterable[str | os.PathLike], name: str, options: Any = None, *,
                    batch_size: int = 32, all_faces: bool = False,
                    progress: Any = None) -> tuple[Reference, list[tuple[str, str]]]:
    """Score ``paths`` (files, folders) through the one scoring path and make a reference of their faces.

    Returns the reference (not yet saved: :func:`save_reference`) and the files left out with their reasons. A set
    with no scorable face is a :class:`ReferenceError`. ``progress(done_files)`` is called as files are scored.
    """
    from attn_core.scoring.model import ScoreOptions, expand_paths

    check_name(name)
    options = options or ScoreOptions()
    files, skipped = expand_paths(paths)
    skipped = [(str(path), reason) for path, reason in skipped]
    if not files:
        raise ReferenceError("No image files found in the given paths: nothing was written."
                             + (f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    settings = model_settings(model, options)
    scores: list[float] = []
    scored_files: set[str] = set()
    seen: set[str] = set()
    for item in model.score_files(files, options, batch_size=batch_size, all_faces=all_faces):
        if str(item.path) not in seen:
            seen.add(str(item.path))
            if progress is not None:
                progress(len(seen))
        if not item.ok:
            skipped.append((str(item.path), item.error))
            continue
        scores.append(item.result.score)
        scored_files.add(str(item.path))
    if not scores:
        raise ReferenceError(f"No face was found in any of the {len(files)} image file(s) given: nothing was written "
                             f"(a reference needs faces the scorer can detect, or already aligned 112x112 crops).")
    return new_reference(name, settings, scores, files=len(scored_files), skipped=len(skipped)), skipped


def save_reference(reference: Reference, *, overwrite: bool = True) -> Path:
    """Write ``<home>/references/NAME.json`` atomically; returns its path."""
    path = reference_path(reference.name)
    if path.exists() and not overwrite:
        raise ReferenceError(f"A reference named '{reference.name}' exists already; remove it first "
                             f"(attn-fiqa reference remove {reference.name}) or choose another name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(reference.to_json(), encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise ReferenceError(f"The reference '{reference.name}' could not be written to {path.parent} "
                             f"({error.strerror or error}).") from None
    return path


def load_reference(name_or_path: str | os.PathLike) -> Reference:
    """A saved reference by name (``<home>/references/NAME.json``) or a path to a reference JSON, validated."""
    text = str(name_or_path)
    path = Path(text) if text.endswith(".json") or os.sep in text else reference_path(text)
    name = path.stem
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in references_home().glob("*.json"))) or "none yet"
        raise ReferenceError(f"No reference named '{name}' (saved references: {known}); build one with "
                             f"`attn-fiqa reference build FACES --name {name}`.")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ReferenceError(_invalid(name, path, f"it is larger than {MAX_FILE_BYTES // 2**20} MB"))
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except OSError as error:
        raise ReferenceError(f"The reference '{name}' ({path}) cannot be read ({error.strerror or error}).") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ReferenceError(_invalid(name, path, f"it is not JSON ({error})")) from None
    return replace(_validated(data, name, path), sha256=hashlib.sha256(raw).hexdigest())


def _invalid(name: str, path: Path | None, what: str) -> str:
    where = f" ({path})" if path is not None else ""
    return (f"The reference '{name}'{where} is not a valid reference file: {what}. Rebuild it with `attn-fiqa "
            f"reference build FACES --name {name}`, or remove it with `attn-fiqa reference remove {name}`.")


def _validated(data: Any, name: str, path: Path | None = None) -> Reference:
    """Every field checked: a hand-edited file that makes no sense is one sentence saying which field is wrong."""
    from attn_core.scoring.quality import AGGREGATIONS, PRECISIONS, TOKEN_MODES

    def fail(what: str) -> ReferenceError:
        return ReferenceError(_invalid(name, path, what))

    if not isinstance(data, dict):
        raise fail(f"it holds a JSON {type(data).__name__}, not an object")
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise fail(f"its format is {data.get('format')!r} version {data.get('version')!r}, not {FORMAT!r} version {VERSION}")
    settings = data.get("settings")
    if not isinstance(settings, dict) or sorted(settings) != sorted(SETTINGS_KEYS):
        raise fail(f"'settings' must be an object with exactly the keys {', '.join(SETTINGS_KEYS)}")
    for key in ("backbone", "weights", "weights_sha256"):
        if not isinstance(settings[key], str):
            raise fail(f"settings.{key} must be text, not {settings[key]!r}")
    if not settings["backbone"]:
        raise fail("settings.backbone is empty")
    if settings["weights_sha256"] and not re.fullmatch(r"[0-9a-f]{64}", settings["weights_sha256"]):
        raise fail(f"settings.weights_sha256 {settings['weights_sha256']!r} is not a sha256 (64 hex digits)")
    block = settings["block"]
    if not isinstance(block, int) or isinstance(block, bool) or block < 0:
        raise fail(f"settings.block must be a block number >= 0, not {block!r}")
    heads = settings["heads"]
    if heads != "all" and not (isinstance(heads, list) and heads and all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 0 for h in heads) and heads == sorted(set(heads))):
        raise fail(f"settings.heads must be \"all\" or increasing head numbers, not {heads!r}")
    for key, allowed in (("aggregation", AGGREGATIONS), ("tokens", TOKEN_MODES), ("precision", PRECISIONS)):
        if settings[key] not in allowed:
            raise fail(f"settings.{key} {settings[key]!r} is not one of {', '.join(allowed)}")
    scores = data.get("scores")
    if not isinstance(scores, list) or not scores:
        raise fail("'scores' must be a non-empty list of numbers")
    bad = next((s for s in scores if not _is_number(s)), None)
    if bad is not None or any(not _is_number(s) for s in scores):
        raise fail(f"'scores' holds {bad!r}, which is not a finite number")
    values = np.asarray(scores, dtype=np.float64)
    if np.any(np.diff(values) < 0):
        raise fail("'scores' are not sorted ascending (as written by attn-fiqa)")
    if data.get("faces") != len(scores):
        raise fail(f"'faces' is {data.get('faces')!r} but 'scores' holds {len(scores)} scores")
    for key in ("files", "skipped"):
        if not isinstance(data.get(key), int) or isinstance(data.get(key), bool) or data[key] < 0:
            raise fail(f"'{key}' must be a count >= 0, not {data.get(key)!r}")
    if not isinstance(data.get("created"), str):
        raise fail("'created' must be the date as text")
    threshold = data.get("threshold")
    if threshold is not None and not (isinstance(threshold, dict) and _is_number(threshold.get("value"))):
        raise fail(f"'threshold' must be null or an object with a finite number as 'value', not {threshold!r}")
    if data.get("name") != name:
        raise fail(f"its name field says {data.get('name')!r} but the file is named {name}.json")
    return Reference(check_name(name), dict(settings), values, data["created"], data["files"], data["skipped"],
                     None if threshold is None else dict(threshold, value=float(threshold["value"])))


def list_references() -> list[tuple[str, Reference | None, str]]:
    """Every saved reference: (name, reference, "") or (name, None, why it cannot be used)."""
    found = []
    for path in sorted(references_home().glob("*.json")):
        try:
            found.append((path.stem, load_reference(path), ""))
        except ReferenceError as error:
            found.append((path.stem, None, str(error)))
    return found


def remove_reference(name: str) -> Path:
    path = reference_path(name)
    if not path.is_file():
        raise ReferenceError(f"No reference named '{name}' to remove (see `attn-fiqa reference list`).")
    path.unlink()
    return path
