"""The app gives its disk back: every request's downloads live in the one folder of the server process, are removed
once older than KEEP_SECONDS, and Gradio's cache copies follow the same clock (``delete_cache``)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")

PHOTO = Path(__file__).resolve().parent.parent / "assets" / "examples" / "person_a_1.jpg"


def test_request_folders_older_than_the_keep_time_are_removed(monkeypatch):
    from app import pictures

    first = pictures.request_folder("attn_fiqa_csv_")
    (first / "scores.csv").write_text("file,score\n")
    second = pictures.request_folder("attn_fiqa_eval_out_")
    assert first.is_dir() and second.is_dir()  # both fresh: both kept
    old = time.time() - pictures.KEEP_SECONDS - 5
    os.utime(first, (old, old))
    third = pictures.request_folder("attn_fiqa_csv_")
    assert not first.exists() and second.is_dir() and third.is_dir()
    assert first.parent == second.parent == third.parent  # one root per server process, removed at exit


def test_batch_downloads_stay_in_the_servers_own_folder(server):
    from gradio_client import Client, handle_file

    from app import pictures

    before = set(Path(tempfile.gettempdir()).glob("attn_fiqa_csv_*"))
    client = Client(server.local_url, verbose=False)
    answer = client.predict([handle_file(str(PHOTO))], "test-face-vit-p8", True, -1, api_name="/batch")
    assert any(isinstance(a, str) and a.endswith(".csv") for a in answer)
    # No loose folder per request in the temp dir (main left 231 of them after a load run): the CSV was written
    # under the app's own folder, which its age sweep and exit clean-up cover.
    assert set(Path(tempfile.gettempdir()).glob("attn_fiqa_csv_*")) == before
    assert list((pictures._app_folder() / "requests").glob("attn_fiqa_csv_*/*.csv"))


def test_gradio_deletes_its_copies_on_the_same_clock(server):
    from app import pictures

    keep = max(1, round(pictures.KEEP_SECONDS))
    assert server.delete_cache == (keep, keep)
