"""Reference sets in the app (issue 23): Inspect's percentile and 0-100 value against a saved reference (and the
bundled examples as the fallback, saying how few), a reference of other settings refused in one sentence, the Batch
tab's pass column from a saved threshold, and the Evaluate tab's goal turned into a threshold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file

from attn_core.scoring import (
    ScoreOptions,
    build_reference,
    create_model,
    remove_reference,
    save_reference,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
TINY = "test-face-vit-p8"


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.local_url, verbose=False)


@pytest.fixture(scope="module")
def references():
    """Two references of the tiny random model (fp32, as the test server runs): the paper's settings with a threshold
    at the median of its faces, and one of block 0."""
    model = create_model(TINY, random_init=True)
    typical, _ = build_reference(model, [EXAMPLES], "app-typical")
    typical = typical.with_threshold({"value": float(np.median(typical.scores)), "goal": "the median, for the test"})
    other, _ = build_reference(model, [EXAMPLES / "person_a_1.jpg"], "app-block0", ScoreOptions(block=0))
    for reference in (typical, other):
        save_reference(reference)
    yield typical, other
    for reference in (typical, other):
        remove_reference(reference.name)


def _details(client: Client, image: str) -> dict:
    return client.predict(handle_file(image), TINY, True, -1, [], "mean", "all", 0, -1, "jet", 0.4, "per image",
                          None, None, False, api_name="/inspect")[8]


def test_inspect_shows_percentile_and_0_100_against_a_saved_reference(client, references):
    typical, other = references
    details = _details(client, str(EXAMPLES / "person_b_2.jpg"))
    text = client.predict(details, typical.name, api_name="/reference_standing")
    lower = np.sum(typical.scores < details["score"])
    equal = np.sum(typical.scores == details["score"])
    assert f"Percentile {100 * lower / typical.faces:.1f}" in text
    assert f"0-100 value {100 * (lower + 0.5 * equal) / typical.faces:.1f}" in text
    assert typical.sha256[:12] in text and ("Passes" in text) == (details["score"] >= typical.threshold_value)
    refused = client.predict(details, other.name, api_name="/reference_standing")
    assert "does not apply" in refused and "block 0 here, 2 there" in refused
    fallback = client.predict(details, "", api_name="/reference_standing")
    assert "only the **7 bundled example faces**" in fallback  # the photo itself is one of the 8, left out
    with pytest.raises(Exception, match="no usable saved reference named"):
        client.predict(details, "../../etc/passwd", api_name="/reference_standing")


def test_batch_marks_the_faces_below_the_threshold(client, references):
    typical, _ = references
    files = [EXAMPLES / name for name in ("person_a_1.jpg", "person_b_1.jpg", "impostor_2.jpg", "astronaut.jpg")]
    table, _, _, csv_file, summary = client.predict(
        [handle_file(str(p)) for p in files], TINY, True, 2, [], "mean", "all", "jet", 0.4, False, typical.name,
        api_name="/batch")
    assert table["headers"][-3:] == ["percentile", "quality 0-100", "pass"]
    # The exact scores (the table rounds them), by the same scoring path on the same batch.
    exact = {p.name: item.result.score for p, item in zip(files, create_model(TINY, random_init=True).score_files(
        files, batch_size=16))}
    for name, _, _, error, percentile, quality, passed in table["data"]:
        score = exact[name]
        lower, equal = np.sum(typical.scores < score), np.sum(typical.scores == score)
        assert error == "" and percentile == pytest.approx(100 * lower / typical.faces, abs=0.01)
        assert quality == pytest.approx(100 * (lower + 0.5 * equal) / typical.faces, abs=0.01)
        assert passed == ("yes" if score >= typical.threshold_value else "NO (below threshold)")
    below = sum(score < typical.threshold_value for score in exact.values())
    assert f"**{below}** face(s) score below its threshold" in summary
    with open(csv_file, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["reference"] for row in rows} == {typical.name} and {row["reference_sha256"] for row in rows} == {
        typical.sha256}
    assert all((row["pass"] == "True") == (float(row["score"]) >= typical.threshold_value) for row in rows)
    with pytest.raises(Exception, match="does not apply"):
        client.predict([handle_file(str(files[0]))], TINY, True, 2, [], "median", "all", "jet", 0.4, False,
                       typical.name, api_name="/batch")


def test_evaluate_turns_a_goal_into_a_threshold(client):
    _, _, notes, downloads = client.predict(
        "demo", None, [TINY], True, "sface", [1e-3], ["per_fraction"], "discard", 30, api_name="/evaluate")
    assert "Score threshold for your goal" in notes
    (goal,) = json.loads(Path(next(d for d in downloads if d.endswith("threshold.json"))).read_text())
    assert goal["reached"] and goal["fraction_discarded"] <= 0.3 and goal["images_below"]
    per_file = Path(next(d for d in downloads if d.endswith("eval_files.csv")))
    with per_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    column = next(key for key in rows[0] if key.startswith(TINY))
    # eval_files.csv keeps 6 significant digits: a face whose score is the threshold itself (the lowest kept pair's
    # quality) may print a hair below it; every other face is clearly on its side.
    values = {row["path"]: float(row[column]) for row in rows}
    assert {name for name, value in values.items() if value < goal["threshold"] - 1e-5} <= set(goal["images_below"])
    assert set(goal["images_below"]) <= {name for name, value in values.items() if value < goal["threshold"] + 1e-5}
    assert all("/tmp" not in name for name in goal["images_below"])  # the user's names, never server paths
    with pytest.raises(Exception, match="from 0 to 95"):
        client.predict("demo", None, [TINY], True, "sface", [1e-3], ["per_fraction"], "discard", 99,
                       api_name="/evaluate")
