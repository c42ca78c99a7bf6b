"""A hostile client of the app's HTTP API: no endpoint reads a file that was not uploaded with the request or
bundled, none can be hung, /batch takes every block of the chosen backbone, every zip member is a row with its
reason, an identity is its folder exactly, and no server path reaches the user."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")]

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
PHOTO = EXAMPLES / "person_a_1.jpg"
TINY = "test-face-vit-p8"
TWELVE = "timm-face-vit-ti-arcface"  # 12 blocks; the startup default (the slider's range) has 6
META = {"_type": "gradio.FileData"}
PNG_MAGIC = b"\x89PNG"


def _refused() -> str:
    from app.photos import REFUSED

    return REFUSED


def _call(server, name: str, data: list, timeout: float = 120) -> tuple[str, object]:
    """POST /gradio_api/call/<name>, then the result's last server-sent event: ("complete" | "error", its data)."""
    base, began = server.local_url.rstrip("/"), time.monotonic()
    started = httpx.post(f"{base}/gradio_api/call/{name.lstrip('/')}", json={"data": data}, timeout=timeout)
    assert started.status_code == 200, started.text
    event, payload = "", None
    with httpx.stream("GET", f"{base}/gradio_api/call/{name.lstrip('/')}/{started.json()['event_id']}",
                      timeout=timeout) as stream:
        for line in stream.iter_lines():  # Gradio's heartbeats keep each read short: bound the whole wait
            if time.monotonic() - began > timeout:
                raise httpx.ReadTimeout(f"{name}: no answer in {timeout:.0f} s")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                payload = json.loads(line.split(":", 1)[1])
    return event, payload


def _error_text(payload) -> str | None:
    """An error event's message, or the reason Inspect shows once in its score box (its answer then holds no picture)."""
    if isinstance(payload, dict):
        return payload.get("error")
    if isinstance(payload, list):
        reasons = [v[2:-2] for v in payload if isinstance(v, str) and v.startswith("**") and v.endswith("**")]
        if reasons and not any(isinstance(v, dict) and ("path" in v or "url" in v) for v in payload):
            return reasons[0]
    return None


def _refusal(event: str, payload) -> bool:
    """Refused: an error event (ours, or Gradio's own wordless validation), or Inspect's one-place reason."""
    if event == "error":
        return True
    # A lab view says the reason once, in the lab's caption (lab_row); its sibling views only clear their outputs.
    return event == "complete" and (_error_text(payload) == _refused()
                                    or (isinstance(payload, list) and all(v is None for v in payload)))


def _file_parameters(parameters: list[dict]) -> list[int]:
    """The positions of an endpoint's file or image inputs, from the API info alone."""
    return [index for index, p in enumerate(parameters)
            if "filepath" in str(p.get("python_type", {}).get("type", "")) or "FileData" in json.dumps(p.get("type"))]


def _arguments(parameters: list[dict], payload) -> list:
    """Every input at its default (tiny random model, last block, zip source), ``payload`` in each file input."""
    chosen = {"backbone": TINY, "backbones": [TINY], "random_weights": True, "block": -1, "source": "zip"}
    values = []
    for index, p in enumerate(parameters):
        if index in _file_parameters(parameters):
            values.append([payload] if "list" in str(p["python_type"]["type"]) else payload)
        elif p["parameter_name"] in chosen:
            values.append(chosen[p["parameter_name"]])
        else:
            values.append(p["parameter_default"] if p.get("parameter_has_default") else p.get("example_input"))
    return values


@pytest.fixture(scope="module")
def api(server) -> dict:
    from gradio_client import Client

    return Client(server.local_url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"]


@pytest.fixture(scope="module")
def secret(tmp_path_factory) -> Path:
    """A real PNG outside every folder the app may serve from."""
    path = Path(tempfile.mkdtemp(prefix="server_secret_")) / "secret.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(path)
    return path


def _upload(server, path: Path) -> str:
    """The file uploaded the way a browser does; returns where Gradio's upload cache keeps it."""
    with open(path, "rb") as handle:
        answer = httpx.post(server.local_url.rstrip("/") + "/gradio_api/upload",
                            files={"files": (path.name, handle)}, timeout=60)
    return answer.json()[0]


def _upload_cache_folder(server) -> Path:
    folder = Path(server.GRADIO_CACHE) / ("f" * 40)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_no_endpoint_reads_a_file_it_was_not_sent(server, api, secret):
    file_endpoints = {name: info for name, info in api.items() if _file_parameters(info["parameters"])}
    assert {"/inspect", "/rerender", "/inspect_after_backbone_change", "/batch", "/evaluate"} <= set(file_endpoints)
    link = _upload_cache_folder(server) / "link.png"  # a symlink inside the upload cache, pointing out of it
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    base = server.local_url.rstrip("/")
    payloads = [{"path": str(secret)}, {"url": str(secret)}, {"url": f"{base}/gradio_api/file={secret}"},
                {"path": str(link)}, {"url": f"file://{secret}"}, {"path": str(secret), "meta": META}]
    for name, info in file_endpoints.items():
        for payload in payloads:
            event, answer = _call(server, name, _arguments(info["parameters"], payload))
            text = json.dumps(answer)
            assert _refusal(event, answer), (name, payload, text[:300])
            # Ours in one sentence; Gradio's own validation (a File input without "meta") says nothing at all.
            assert _error_text(answer) in (_refused(), None), (name, payload, text[:300])
            assert "gradio_api/file=" not in text and str(secret) not in text and "secret" not in text
    # The same sentence whatever the path is: missing, a folder, a device, a real file.
    answers = {_error_text(_call(server, "/inspect", _arguments(api["/inspect"]["parameters"], {"path": path}))[1])
               for path in (str(secret), str(secret.parent / "missing.png"), str(secret.parent), "/etc")}
    assert answers == {_refused()}


def test_uploads_and_examples_still_work_by_path_and_url(server, api, secret):
    uploaded = _upload(server, secret.parent / "secret.png")
    for payload in ({"path": uploaded, "meta": META}, {"path": uploaded},
                    {"url": f"{server.local_url.rstrip('/')}/gradio_api/file={uploaded}"}):
        data = _arguments(api["/inspect"]["parameters"], payload)
        data[-1] = True  # centre crop: the random PNG has no face
        event, answer = _call(server, "/inspect", data)
        assert event == "complete", answer
    event, answer = _call(server, "/inspect", _arguments(api["/inspect"]["parameters"], {"path": str(PHOTO)}))
    assert event == "complete", answer


def test_devices_and_fifos_are_refused_at_once(server, api):
    fifo = _upload_cache_folder(server) / "fifo.jpg"  # opening a FIFO for reading blocks until a writer comes
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    for path in ("/dev/zero", "/dev/urandom", str(fifo)):
        began = time.monotonic()
        try:
            event, answer = _call(server, "/inspect", _arguments(api["/inspect"]["parameters"], {"path": path}),
                                  timeout=20)
        except httpx.TimeoutException:
            pytest.fail(f"{path} hung the request")
        assert _refusal(event, answer) and _error_text(answer) == _refused(), (path, answer)
        assert time.monotonic() - began < 10


def test_an_oversize_file_is_refused_from_its_size(server, api):
    from app.photos import MAX_FILE_BYTES

    big = _upload_cache_folder(server) / "huge.jpg"
    with open(big, "wb") as handle:  # sparse: no disk used, and never read
        handle.truncate(2 * 2**30)  # 2 GiB, the size the issue tried
    assert big.stat().st_size > MAX_FILE_BYTES
    began = time.monotonic()
    event, answer = _call(server, "/inspect", _arguments(api["/inspect"]["parameters"], {"path": str(big), "meta": META}))
    assert event in ("error", "complete") and "huge.jpg" in _error_text(answer) and "limit" in _error_text(answer), answer
    assert str(big.parent) not in _error_text(answer)
    assert time.monotonic() - began < 10
    big.unlink()


def test_every_request_has_a_time_limit():
    import contextvars

    import gradio as gr

    from app.errors import user_errors

    seen = contextvars.ContextVar("seen", default="lost")
    seen.set("kept")
    release = threading.Event()

    @user_errors(seconds=0.5)
    def stuck():
        release.wait(30)

    @user_errors(seconds=5)
    def reads_context():
        return seen.get()

    began = time.monotonic()
    with pytest.raises(gr.Error, match="limit"):
        stuck()
    assert time.monotonic() - began < 3
    release.set()
    assert reads_context() == "kept"  # Gradio's request context (the file check reads it) reaches the work


def _bad_crc_zip(path: Path, members: dict[str, bytes], broken: str) -> Path:
    """A stored (uncompressed) zip whose member ``broken`` has one flipped byte: its CRC no longer matches."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for name, data in members.items():
            bundle.writestr(zipfile.ZipInfo(name), data)
        offset = bundle.getinfo(broken).header_offset + 30 + len(broken.encode())  # its data, after the header
    raw = bytearray(buffer.getvalue())
    raw[offset + 200] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def test_batch_every_member_is_a_row_and_any_block_of_the_chosen_backbone(server, api, tmp_path):
    photo = PHOTO.read_bytes()
    members = {"first.jpg": photo, "broken_crc.jpg": (EXAMPLES / "person_b_1.jpg").read_bytes(),
               "after_1.jpg": (EXAMPLES / "person_a_2.jpg").read_bytes(), "../escape.jpg": photo,
               "in/../../escape2.jpg": photo, "truncated.jpg": photo[:300], "after_2.jpg": photo}
    archive = _bad_crc_zip(tmp_path / "faces.zip", members, "broken_crc.jpg")
    uploaded = _upload(server, archive)
    data = _arguments(api["/batch"]["parameters"], {"path": uploaded, "meta": META})
    data[1], data[3] = TWELVE, 11  # the last block of a 12-block backbone
    event, answer = _call(server, "/batch", data)
    assert event == "complete", answer
    table, *_, summary = answer
    rows = {row[0]: row for row in table["data"]}
    assert set(rows) == {f"faces.zip/{name}" for name in members}
    for name in ("first.jpg", "after_1.jpg", "after_2.jpg"):  # members after the bad one are still read
        assert rows[f"faces.zip/{name}"][3] == "" and rows[f"faces.zip/{name}"][1] is not None, rows
    assert "CRC" in rows["faces.zip/broken_crc.jpg"][3]
    assert "leaves the zip" in rows["faces.zip/../escape.jpg"][3]
    assert "leaves the zip" in rows["faces.zip/in/../../escape2.jpg"][3]
    reason = rows["faces.zip/truncated.jpg"][3]
    assert "faces.zip/truncated.jpg" in reason or "truncated.jpg" in reason
    for row in table["data"]:  # no server path in any reason
        assert tempfile.gettempdir() not in row[3] and "attn_fiqa_" not in row[3] and "/gradio/" not in row[3], row
    data[2:4] = [True, -1]
    data[0] = [{"path": _upload(server, PHOTO), "meta": META}]
    event, answer = _call(server, "/batch", data)
    assert event == "complete" and answer[0]["data"][0][3] == "", answer
    data[3] = 12
    event, answer = _call(server, "/batch", data)
    assert event == "error" and "Block 12 does not exist" in _error_text(answer), answer


def test_identity_folders_are_exact(tmp_path):
    from app.uploads import BatchInputs, unzip

    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for folder in ("x y", "x_y", "x.y", "X Y"):
            bundle.writestr(f"{folder}/a.jpg", b"1")
            bundle.writestr(f"{folder}/b.jpg", b"2")
    root = tmp_path / "out"
    root.mkdir()
    inputs = BatchInputs([], [], root)
    unzip(archive, root, "people.zip", inputs, identity_folders=True)
    folders = {}
    for shown, path in inputs.files:
        folders.setdefault(shown.split("/")[1], set()).add(path.parent)
    assert all(len(paths) == 1 for paths in folders.values())  # one folder per identity...
    assert len({next(iter(paths)) for paths in folders.values()}) == 4  # ...and a different one for each


def test_evaluate_counts_identities_by_folder_and_shows_no_server_path(server, api, tmp_path):
    from attn_core.paths import attn_fiqa_home

    members = {"x y/1.jpg": PHOTO.read_bytes(), "x y/2.jpg": (EXAMPLES / "person_a_2.jpg").read_bytes(),
               "x_y/1.jpg": (EXAMPLES / "person_b_1.jpg").read_bytes(),
               "x.y/1.jpg": (EXAMPLES / "impostor_1.jpg").read_bytes(),
               "x.y/broken.jpg": b"\xff\xd8 truncated", "../x y/evil.jpg": PHOTO.read_bytes()}
    archive = tmp_path / "people.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name, data in members.items():
            bundle.writestr(zipfile.ZipInfo(name), data)
    data = _arguments(api["/evaluate"]["parameters"], {"path": _upload(server, archive), "meta": META})
    data[5], data[6] = [1e-3], ["fixed"]
    event, answer = _call(server, "/evaluate", data, timeout=280)
    assert event == "complete", answer
    plots, table, notes, downloads = answer
    assert "(1 genuine," in notes, notes  # x y/ only: x_y/ and x.y/ are other people
    assert "`people.zip/../x y/evil.jpg`: Its path leaves the zip" in notes
    assert "`people.zip/x.y/broken.jpg`" in notes
    server_paths = (tempfile.gettempdir(), str(attn_fiqa_home()), "attn_fiqa_eval", "/gradio/")
    assert not any(path in notes for path in server_paths), notes
    texts = {Path(item["path"]).name: Path(item["path"]).read_text() for item in downloads}
    assert set(texts) == {"eval.json", "eval.md", "eval_files.csv"}
    for name, text in texts.items():
        assert not any(path in text for path in server_paths), (name, text[:2000])
    listed = sorted(row["path"] for row in csv.DictReader(io.StringIO(texts["eval_files.csv"])))
    assert listed == sorted(f"people.zip/{name}" for name in members if ".." not in name)


def test_no_weights_folder_nor_checkpoint_path_reaches_the_user(server, api, tmp_path, monkeypatch):
    import torch

    from app import models
    from attn_core.paths import weights_home
    from attn_core.zoo import load_backbone

    data = _arguments(api["/inspect"]["parameters"], {"path": str(PHOTO)})
    data[1], data[2] = "insightface-vit-s", False  # no weights installed in the tests
    event, answer = _call(server, "/inspect", data)
    assert event in ("error", "complete") and "random weights" in _error_text(answer), answer
    assert str(weights_home()) not in _error_text(answer) and str(weights_home().parent) not in _error_text(answer)
    assert str(weights_home()) not in models.backbone_status("insightface-vit-s", False)

    checkpoint = tmp_path / "private_folder" / "mine.pt"
    checkpoint.parent.mkdir()
    torch.save(load_backbone("test-face-vit-p9", random_init=True, seed=4, device="cpu").model.state_dict(),
               checkpoint)
    monkeypatch.setattr(models, "_user_models", {})
    name = models.use_weights("test-face-vit-p9", str(checkpoint))
    data[1], data[3] = name, -1
    event, answer = _call(server, "/inspect", data)
    assert event == "complete", answer
    details = answer[-1]
    assert "private_folder" not in json.dumps(details) and details["weights"] == "mine.pt", details


def test_every_endpoint_runs_under_the_time_limit():
    """Every handler of the app (the endpoints added later too) is wrapped by app.errors.user_errors somewhere on its
    functools.wraps chain; only Gradio's own example loader and one button that returns constants are not."""
    from app import errors, ui

    limited = errors.user_errors(lambda: None).__code__
    exempt = {"_try_random"}  # the banner's button: returns (True, an example's path), reads nothing
    unlimited = []
    for block_function in ui.build_demo().fns.values():
        function = block_function.fn
        if function is None or function.__module__.startswith("gradio") or function.__name__ in exempt:
            continue
        chain = [function]
        while hasattr(chain[-1], "__wrapped__"):
            chain.append(chain[-1].__wrapped__)
        if not any(getattr(f, "__code__", None) is limited for f in chain):
            unlimited.append(f"{block_function.api_name} ({function.__qualname__})")
    assert not unlimited, unlimited
