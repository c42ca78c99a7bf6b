"""The CLI never stops on one file (issue 19, items 9-13 and 7): any file name round-trips in every output format,
overlays that cannot be written are one line each, a full disk is one line with no temporary file left, --resume
refuses a file that is not ours, malformed checkpoints get one sentence, and a score does not depend on its batch."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from pathlib import Path

import pytest

from attn_core.batch import output
from attn_core.batch.output import read_rows
from attn_core.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
TINY = ["--backbone", "test-face-vit-p8", "--random-init", "--quiet", "--batch-size", "2"]


def _odd_names(folder: Path) -> list[str]:
    """Photos whose names are not UTF-8, hold a carriage return, a newline, or are very long: their str() forms."""
    folder.mkdir()
    names = [b"bad_\xff\xfe.jpg", b"carriage\rreturn.jpg", b"new\nline.jpg", b"plain.jpg"]
    for name, source in zip(names, ("person_a_1.jpg", "person_a_2.jpg", "person_b_1.jpg", "person_b_2.jpg")):
        with open(os.fsencode(folder) + b"/" + name, "wb") as handle:
            handle.write((EXAMPLES / source).read_bytes())
    return sorted(str(folder / os.fsdecode(name)) for name in names)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_any_file_name_round_trips_and_resume_scores_nothing_again(tmp_path: Path, capsys, suffix: str) -> None:
    paths = _odd_names(tmp_path / "odd")
    out = tmp_path / f"scores{suffix}"
    assert main(["score", str(tmp_path / "odd"), *TINY, "--out", str(out)]) == 0
    rows = read_rows(out)
    assert sorted(row["path"] for row in rows) == paths  # every name exactly, not one row lost
    assert all(not row["error"] for row in rows)
    capsys.readouterr()
    assert main(["score", str(tmp_path / "odd"), *TINY, "--out", str(out), "--resume"]) == 0
    assert "4 file(s) already there, 0 to score" in capsys.readouterr().err
    assert sorted(row["path"] for row in read_rows(out)) == paths


def test_long_file_name_gets_its_overlay_and_a_file_as_overlay_folder_is_one_line(tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    long_name = "x" * 236 + ".jpg"  # 240 characters: with the hash and suffix, over the 255 bytes of a file name
    shutil.copy(EXAMPLES / "person_a_1.jpg", photos / long_name)
    shutil.copy(EXAMPLES / "person_a_2.jpg", photos / "short.jpg")
    overlays, out = tmp_path / "overlays", tmp_path / "s.csv"
    assert main(["score", str(photos), *TINY, "--out", str(out), "--save-overlays", str(overlays)]) == 0
    assert len(list(overlays.iterdir())) == 2 and len(read_rows(out)) == 2
    not_a_folder = tmp_path / "file.png"
    not_a_folder.write_bytes(b"x")
    assert main(["score", str(photos), *TINY, "--save-overlays", str(not_a_folder)]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a folder" in err and "Traceback" not in err
    assert not_a_folder.read_bytes() == b"x"


def test_an_overlay_that_cannot_be_written_is_reported_and_the_run_goes_on(tmp_path: Path, capsys, monkeypatch) -> None:
    from PIL import Image

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "s.csv"
    assert main(["score", str(EXAMPLES / "person_a_1.jpg"), str(EXAMPLES / "person_a_2.jpg"), *TINY, "--out", str(out),
                 "--save-overlays", str(tmp_path / "ov")]) == 0
    assert len(read_rows(out)) == 2
    assert capsys.readouterr().err.count("no overlay for") == 2


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_full_disk_is_one_line_with_the_rows_written_and_no_temporary_file(tmp_path: Path, capsys, monkeypatch,
                                                                          suffix: str) -> None:
    real_open, state = Path.open, {"calls": 0}

    def failing_open(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if "r" in mode:
            return handle
        write = handle.write

        def limited(text):
            state["calls"] += 1
            if state["calls"] > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(text)

        handle.write = limited
        return handle

    monkeypatch.setattr(Path, "open", failing_open)
    out = tmp_path / f"x{suffix}"
    files = [str(EXAMPLES / name) for name in ("person_a_1.jpg", "person_a_2.jpg", "person_b_1.jpg", "person_b_2.jpg")]
    clock = itertools.count(0.0, 10.0)
    monkeypatch.setattr(output.time, "monotonic", lambda: next(clock))  # the JSON array rewritten at every row
    assert main(["score", *files, *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and "row(s)" in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.tmp"))
    monkeypatch.undo()
    held = int(err.split("holds the first ")[1].split(" ")[0])
    assert len(read_rows(out)) == held


FOREIGN = {
    "x.json": ['{"a": 1}', "null", "[1, 2, 3]", "[null]", '[{"no_path": 1}]'],
    "x.jsonl": ["[1]\n", '"s"\n', "garbage\n{}\n", '{"path": 3}\n'],
    "x.csv": ["name,age\nann,3\n", "just some text\nwith lines\n"],
}


@pytest.mark.parametrize("name, text", [(name, text) for name, texts in FOREIGN.items() for text in texts])
def test_resume_refuses_a_file_that_is_not_ours_and_leaves_it(tmp_path: Path, capsys, name: str, text: str) -> None:
    out = tmp_path / name
    out.write_text(text)
    assert main(["score", str(EXAMPLES / "person_a_1.jpg"), *TINY, "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "is not a score file of attn-fiqa" in err and "Traceback" not in err
    assert out.read_text() == text


@pytest.mark.parametrize("key, shape", [("pos_embed", (16,)), ("blocks.0.mlp.fc1.weight", ())])
def test_a_tensor_of_the_wrong_rank_is_named(key: str, shape: tuple) -> None:
    import torch

    from attn_core.zoo.weights import CheckpointError, infer_face_vit_config

    state = {"patch_embed.proj.weight": torch.zeros(32, 3, 8, 8), "pos_embed": torch.zeros(1, 196, 32),
             "blocks.0.mlp.fc1.weight": torch.zeros(64, 32)}
    state[key] = torch.zeros(shape)
    with pytest.raises(CheckpointError, match=f"key {key} has shape"):
        infer_face_vit_config(state)
