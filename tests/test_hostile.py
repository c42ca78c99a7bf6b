"""Hostile inputs through the CLI, the Python API and the app's HTTP API: every bad input gets a named reason,
every good one its row, nothing runs from a pickle, and nothing is written outside temporary folders."""

from __future__ import annotations

import csv
import os
import pickle
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attn_core
from attn_core.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init"]


def _png_declaring(width: int, height: int) -> bytes:
    """A few hundred bytes claiming a huge image (a decompression bomb by its header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


class _CreatesAFile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


@pytest.fixture()
def corpus(tmp_path: Path) -> dict:
    """Good photos plus one of each kind of bad input, with the reason each must get."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    good = {}
    for name in ("person_a_1.jpg", "aligned_112.png"):
        shutil.copy(EXAMPLES / name, folder / name)
        good[name] = folder / name
    unicode_name, newline_name = "visage_é_顔.jpg", "line\nbreak.jpg"
    shutil.copy(EXAMPLES / "person_b_1.jpg", folder / unicode_name)
    shutil.copy(EXAMPLES / "person_b_2.jpg", folder / newline_name)
    good[unicode_name], good[newline_name] = folder / unicode_name, folder / newline_name
    (folder / "truncated.jpg").write_bytes((EXAMPLES / "person_a_2.jpg").read_bytes()[:3000])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "one_pixel.png")
    (folder / "huge_declared.png").write_bytes(_png_declaring(60_000, 60_000))
    os.mkfifo(folder / "fifo.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    bad = {"truncated.jpg": "truncated or corrupt", "empty.png": "Cannot load", "text.jpg": "not a readable image",
           "one_pixel.png": "", "huge_declared.png": "Downscale it first", "fifo.jpg": "is a fifo",
           "loop.jpg": "is a symlink loop"}
    marker = tmp_path / "MARKER_pickle_ran"
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as handle:
        pickle.dump({"state_dict": {"w": _CreatesAFile(marker)}}, handle)
    return {"folder": folder, "good": good, "bad": bad, "marker": marker, "evil": evil}


def test_cli_names_every_bad_input_and_keeps_every_good_row(corpus: dict, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    watched = [Path.home() / ".cache" / "attn_fiqa", Path.home() / ".cache" / "huggingface", corpus["folder"]]
    before = {p: _listing(p) for p in watched}
    assert main(["score", str(corpus["folder"]), *TINY, "--out", str(out), "--quiet"]) == 0
    assert {p: _listing(p) for p in watched} == before  # nothing written to the user's caches or beside the inputs
    with out.open(newline="") as handle:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(handle)}
    for name in corpus["good"]:
        assert rows[name]["error"] == "" and float(rows[name]["score"]) == float(rows[name]["score"])
    for name, reason in corpus["bad"].items():
        assert name in rows and rows[name]["error"], name  # every bad input is a row with a reason
        assert reason in rows[name]["error"], (name, rows[name]["error"])
    assert len(rows) == len(corpus["good"]) + len(corpus["bad"])


def _listing(folder: Path) -> set[tuple[str, int]]:
    if not folder.is_dir():
        return set()
    return {(str(p), p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_malicious_pickle_never_runs(corpus: dict, capsys) -> None:
    evil, marker = corpus["evil"], corpus["marker"]
    # CLI
    assert main(["score", str(EXAMPLES / "aligned_112.png"), "--weights", str(evil), "--num-heads", "4"]) == 2
    assert "refuse" in capsys.readouterr().err
    # Python API
    with pytest.raises(ValueError, match="refuse"):
        attn_core.create_model(weights=evil, device="cpu")
    # The app, launched with it
    launch = subprocess.run([sys.executable, "-m", "app", "--weights", str(evil), "--num-heads", "4"], cwd=ROOT,
                            env=os.environ | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert launch.returncode == 2 and "refuse" in launch.stderr and "Traceback" not in launch.stderr
    assert not marker.exists()


def test_api_score_files_reports_and_continues(corpus: dict) -> None:
    from attn_core.scoring.model import expand_paths

    model = attn_core.create_model("test-face-vit-p8", random_init=True, device="cpu")
    files, unreadable = expand_paths([corpus["folder"]])
    results = list(model.score_files(files))
    errors = {item.path.name: item.error for item in results if not item.ok}
    errors.update({path.name: reason for path, reason in unreadable})
    assert {item.path.name for item in results if item.ok} == set(corpus["good"])
    for name, reason in corpus["bad"].items():
        assert reason in errors[name]


def test_app_batch_names_every_bad_upload(corpus: dict, client) -> None:
    from gradio_client import handle_file

    uploads = [p for p in corpus["folder"].iterdir() if p.is_file() and not p.is_symlink() and "\n" not in p.name]
    table, *_ = client.predict([handle_file(str(p)) for p in uploads], "test-face-vit-p8", True, 2, [], "mean", "all",
                               "jet", 0.4, False, api_name="/batch")
    rows = {row[0]: row for row in table["data"]}
    for name in ("truncated.jpg", "empty.png", "text.jpg", "huge_declared.png"):
        assert rows[name][3], name
        assert "/gradio/" not in rows[name][3] and "/tmp/" not in rows[name][3]
    for name in ("person_a_1.jpg", "aligned_112.png", "visage_é_顔.jpg"):
        assert rows[name][3] == "" and rows[name][1] is not None


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.local_url, verbose=False)
