"""``attn-fiqa score --engine ray``: the same numbers and error rows as the local engine, on a local Ray cluster and
on a simulated two-node one, resumable, Parquet that pandas and pyarrow read.

Each cluster is started by the test itself (``ray.init(num_cpus=2, include_dashboard=False)``,
``ray.cluster_utils.Cluster``) with its session files in a temp folder.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='the scale-out engine needs pip install "attn-fiqa[ray]"')

import pyarrow.parquet as pq  # noqa: E402

from attn_core.batch.ray_engine import (  # noqa: E402
    RayJob,
    ScaleError,
    done_paths,
    list_inputs,
    read_results,
    run,
)
from attn_core.cli.main import main  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init", "--precision", "fp32"]
JOB = RayJob(backbone="test-face-vit-p8", random_init=True, precision="fp32", batch_size=4)


@pytest.fixture(scope="module")
def session_dir():
    # Ray's unix sockets must fit in 107 bytes: a short folder of its own, removed afterwards.
    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def local_cluster(session_dir):
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=session_dir, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def corpus(tmp_path: Path) -> dict:
    """Example photos plus bad inputs of each kind, one of them a name with a newline."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.*")):
        shutil.copy(path, folder / path.name)
    shutil.copy(EXAMPLES / "person_b_2.jpg", folder / "line\nbreak é.jpg")
    (folder / "truncated.jpg").write_bytes((EXAMPLES / "person_a_2.jpg").read_bytes()[:3000])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    return {"folder": folder, "missing": str(tmp_path / "missing.jpg")}


def _local_rows(corpus: dict, tmp_path: Path) -> dict[str, dict]:
    out = tmp_path / "local.jsonl"
    assert main(["score", str(corpus["folder"]), corpus["missing"], *TINY, "--out", str(out), "--quiet"]) == 0
    return {row["path"]: row for row in map(json.loads, out.read_text().splitlines())}


def _check_same(local: dict[str, dict], frame) -> None:
    assert sorted(frame["path"]) == sorted(local)  # one row per file (largest face), good or bad
    for row in frame.to_dict("records"):
        want = local[row["path"]]
        if want["error"]:
            assert row["error"] == want["error"] and np.isnan(row["score"])
        else:
            assert row["error"] == ""
            assert row["score"] == pytest.approx(want["score"], rel=1e-6, abs=1e-6)
            assert row["faces_found"] == want["faces_found"] and row["alignment"] == want["alignment"]
            assert len(row["head_scores"]) == 4 and np.mean(row["head_scores"]) == pytest.approx(row["score"])
        assert (row["backbone"], row["weights"], row["precision"]) == (want["backbone"], want["weights"], "fp32")


def test_ray_engine_gives_the_local_scores_and_error_rows(local_cluster, corpus: dict, tmp_path: Path) -> None:
    local = _local_rows(corpus, tmp_path)
    assert sum(1 for r in local.values() if r["error"]) == 5  # truncated, empty, text, loop, missing
    out = tmp_path / "ray_out"
    assert main(["score", str(corpus["folder"]), corpus["missing"], *TINY, "--engine", "ray", "--out", str(out),
                 "--batch-size", "4", "--quiet"]) == 0
    frame = read_results(str(out))
    _check_same(local, frame)
    # Plain Parquet: pyarrow and pandas read the folder without this project.
    import pandas as pd

    table = pq.read_table(str(out), ignore_prefixes=["_", "."])
    assert table.num_rows == len(local)
    assert len(pd.read_parquet(str(out))) == len(local)
    box = frame.loc[frame["alignment"] == "detected", "box"].iloc[0]
    assert len(box) == 4 and len(frame.loc[frame["alignment"] == "detected", "landmarks"].iloc[0]) == 10


def test_resume_scores_only_what_an_interrupted_run_left(local_cluster, corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "ray_out"
    first = run([str(corpus["folder"])], str(out), JOB, progress=False)
    assert first["scored_files"] == first["rows"] == len(list_inputs([str(corpus["folder"])])[0]) + 1  # + the loop
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) >= 2
    # What a kill leaves: complete parts (moved into place when written) and perhaps a half-written temporary one.
    lost = set(pq.read_table(parts[0]).column("path").to_pylist())
    parts[0].unlink()
    (out / ".tmp-part-dead.parquet").write_bytes(b"PAR1 half a file")
    assert not lost & done_paths(str(out))
    with pytest.raises(ScaleError, match="already holds results; pass --resume"):
        run([str(corpus["folder"])], str(out), JOB, progress=False)
    with pytest.raises(ScaleError, match=r"other options \(aggregation 'mean' -> 'median'\)"):
        from attn_core.scoring.model import ScoreOptions

        run([str(corpus["folder"])], str(out), RayJob(**{**JOB.__dict__, "options": ScoreOptions(aggregation="median")}),
            resume=True, progress=False)
    again = run([str(corpus["folder"])], str(out), JOB, resume=True, progress=False)
    assert again["scored_files"] == len(lost) and again["already_done"] == first["scored_files"] - len(lost)
    frame = read_results(str(out))
    assert sorted(frame["path"]) == sorted(set(frame["path"]))  # every file once
    assert len(frame) == first["rows"]
    nothing = run([str(corpus["folder"])], str(out), JOB, resume=True, progress=False)
    assert nothing["scored_files"] == 0


def test_inputs_file_lists_globs_and_uris(corpus: dict, tmp_path: Path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text(f"{EXAMPLES / 'person_a_1.jpg'}\n\nfile://{EXAMPLES / 'person_b_1.jpg'}\n{corpus['missing']}\n")
    files, bad = list_inputs([str(listing), str(EXAMPLES / "impostor_*.jpg"), f"file://{EXAMPLES}"])
    assert str(EXAMPLES / "person_a_1.jpg") in files and f"file://{EXAMPLES / 'person_b_1.jpg'}" in files
    assert {str(EXAMPLES / "impostor_1.jpg"), str(EXAMPLES / "impostor_2.jpg")} <= set(files)
    assert len([f for f in files if f.startswith("file://")]) == 8  # the listed one and the folder, once
    assert bad == [(corpus["missing"], f"{corpus['missing']} does not exist")]
    assert list_inputs([str(tmp_path / "*.nothing")])[1][0][1].endswith("matches no file")


def test_out_is_checked_before_any_work(tmp_path: Path) -> None:
    afile = tmp_path / "scores.csv"
    afile.write_text("")
    with pytest.raises(ScaleError, match="is a file"):
        run([str(EXAMPLES)], str(afile), JOB, progress=False)
    with pytest.raises(ScaleError, match="does not exist; create it first"):
        run([str(EXAMPLES)], str(tmp_path / "no" / "such"), JOB, progress=False)
    assert main(["score", str(EXAMPLES), *TINY, "--engine", "ray"]) == 2  # --out required: one line, exit 2


def test_two_node_cluster_gives_the_same_scores(corpus: dict, tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        out = tmp_path / "two_nodes"
        summary = run([str(corpus["folder"]), corpus["missing"]], str(out), JOB, progress=False)
        assert summary["errors"] == 5
        _check_same(_local_rows(corpus, tmp_path), read_results(str(out)))
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_local_csv_is_unchanged_by_the_engine_option(tmp_path: Path) -> None:
    out = tmp_path / "local.csv"
    assert main(["score", str(EXAMPLES / "person_a_1.jpg"), *TINY, "--engine", "local", "--out", str(out),
                 "--quiet"]) == 0
    assert [r["precision"] for r in csv.DictReader(out.open())] == ["fp32"]
