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


@pytest.mark.timeout(400)
def test_a_server_stopped_with_sigterm_leaves_only_gradios_copies_of_the_examples(tmp_path):
    """kill (SIGTERM) stops the server as Ctrl-C does: every request's files go (main left them all behind)."""
    import signal
    import socket
    import subprocess
    import sys

    from gradio_client import Client, handle_file

    from app.photos import example_paths

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    temp = tmp_path / "server_tmp"
    temp.mkdir()
    env = os.environ | {"TMPDIR": str(temp), "GRADIO_TEMP_DIR": str(temp / "gradio"),
                        "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--precision", "fp32"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        began = time.monotonic()
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                break
            except Exception:  # noqa: BLE001 -- not listening yet, whatever the client raises
                assert server.poll() is None and time.monotonic() - began < 240, "the app did not start"
                time.sleep(0.5)
        at_start = {p: p.read_bytes() for p in temp.rglob("*") if p.is_file()}  # what the page itself shows
        upload = tmp_path / "my_upload.jpg"  # not an example's name: its copy must go
        upload.write_bytes(PHOTO.read_bytes())
        answer = client.predict([handle_file(str(upload))], "test-face-vit-p8", True, -1, api_name="/batch")
        assert any(isinstance(a, str) and a.endswith(".csv") for a in answer)
        during = [p for p in temp.rglob("*") if p.is_file()]
        assert any("attn_fiqa_csv_" in str(p) for p in during) and any(p.name == upload.name for p in during)
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    left = [p for p in temp.rglob("*") if p.is_file()]
    examples = {p.name: p.read_bytes() for p in example_paths()}
    # What stays is Gradio's own copy of each bundled example and of what the page showed before any request (kept
    # in its cache by design, the same few files however many requests were served): no upload, no picture, no CSV.
    assert all(examples.get(p.name) == p.read_bytes() or at_start.get(p) == p.read_bytes() for p in left), \
        sorted(map(str, left))


def test_each_request_hands_its_freed_heap_back_after_answering(monkeypatch):
    """The heap trim after a request (memory after load rounds: benchmarks/RESULTS.md) runs once the answer is
    handed over, never on the request's latency."""
    import threading

    from app import errors

    trimming, release, trims = threading.Event(), threading.Event(), []

    def slow_trim():
        trimming.set()
        release.wait(10)
        trims.append(1)

    monkeypatch.setattr(errors, "return_freed_memory", slow_trim)
    began = time.monotonic()
    assert errors.user_errors(seconds=5)(lambda: "answer")() == "answer"
    assert time.monotonic() - began < 5 and not trims  # answered while the trim is still running
    assert trimming.wait(5)
    release.set()
    for _ in range(100):
        if trims:
            break
        time.sleep(0.05)
    assert trims == [1]
