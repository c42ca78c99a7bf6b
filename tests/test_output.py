"""Streaming, resumable score output: --out checked before any work, rows on disk as they are scored, a SIGKILL
halfway leaves a valid file, and --resume finishes it with every file exactly once and the same numbers."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attn_core.batch.output import read_rows
from attn_core.cli.main import main
from attn_core.paths import ASSETS_DIR

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ASSETS_DIR / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init"]


@pytest.fixture()
def many_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for copy in range(8):
        target = folder / f"set{copy}"
        shutil.copytree(EXAMPLES, target)
    (folder / "set0" / "broken.jpg").write_text("not an image")
    return folder


@pytest.mark.parametrize("case, message", [
    ("folder", "is a folder; give a file name"),
    ("missing_parent", "does not exist; create it first"),
    ("suffix", "use a .csv, .jsonl or .json file name"),
])
def test_bad_out_is_reported_before_any_work(tmp_path: Path, capsys, case: str, message: str) -> None:
    out = {"folder": tmp_path, "missing_parent": tmp_path / "no" / "s.csv", "suffix": tmp_path / "s.txt"}[case]
    # An unknown backbone would fail later: the --out error must come first, before any model or image is touched.
    assert main(["score", str(EXAMPLES), "--backbone", "no-such-net", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err


def test_resume_needs_out(capsys) -> None:
    assert main(["score", str(EXAMPLES), *TINY, "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def _run(out: Path, photos: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "attn_core", "score", str(photos), *TINY, "--out", str(out),
                             "--batch-size", "2", "--quiet", *extra], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_sigkill_halfway_then_resume(many_photos: Path, tmp_path: Path, suffix: str) -> None:
    total = sum(1 for p in many_photos.rglob("*") if p.is_file())
    reference = tmp_path / f"reference{suffix}"
    assert _run(reference, many_photos).wait(timeout=240) == 0
    expected = {r["path"]: r for r in read_rows(reference)}
    assert len(expected) == total

    out = tmp_path / f"killed{suffix}"
    run = _run(out, many_photos)
    began = time.monotonic()
    while time.monotonic() - began < 200:
        if out.is_file() and 8 <= len(read_rows(out)) and run.poll() is None:
            break
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    if suffix == ".json":
        partial = json.loads(out.read_text())  # always a complete JSON array
    else:
        partial = read_rows(out)
        if suffix == ".jsonl":
            for line in out.read_text().splitlines()[:-1]:
                json.loads(line)
    assert 0 < len(partial) < total, "the kill did not land halfway"

    assert _run(out, many_photos, "--resume").wait(timeout=240) == 0
    rows = read_rows(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == total  # every file exactly once
    for row in rows:  # the same numbers; batches differ after a resume, so float32 rounding may too
        reference_row = expected[row["path"]]
        assert (row["error"] or "") == (reference_row["error"] or "")
        if not row["error"]:
            assert float(row["score"]) == pytest.approx(float(reference_row["score"]), rel=1e-5, abs=1e-6)
    assert any("broken.jpg" in r["path"] and r["error"] for r in rows)
    if suffix == ".csv":
        with out.open() as handle:
            assert list(csv.reader(handle))[0][0] == "path"  # one header, at the top


def test_resume_with_other_options_is_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.csv"
    assert main(["score", str(EXAMPLES / "astronaut.jpg"), *TINY, "--out", str(out), "--quiet"]) == 0
    assert main(["score", str(EXAMPLES), *TINY, "--out", str(out), "--quiet", "--resume", "--block", "0"]) == 2
    assert "was written with other options (block '2' -> 0)" in capsys.readouterr().err
