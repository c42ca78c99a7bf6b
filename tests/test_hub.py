"""First-use downloads through the real huggingface_hub / timm code, over HTTP, against a local Hub server.

Every command runs as a user would start it (a subprocess) with HF_ENDPOINT pointed at ``tests/hub_server.py`` on
127.0.0.1 and HF_HOME / ATTN_FIQA_HOME in a temporary folder: nothing here touches the internet or the user's cache.
The served repos are laid out like the real ones (CVLFace: prefixed keys in model.safetensors, config.json,
pretrained_model/; timm: config.json with architecture and model_args, model.safetensors).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hub_server import HubServer
from safetensors.torch import save, save_file

from attn_core.scoring.model import FaceQualityModel
from attn_core.zoo.backbone import load_backbone
from attn_core.zoo.face_vit import FaceViT
from attn_core.zoo.registry import ONLINE_DEFAULT, get_spec

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "assets" / "examples" / "person_a_1.jpg"
CVLFACE = get_spec(ONLINE_DEFAULT).weights.location
TIMM_FACE = "timm-face-vit-ti-cosface"
TIMM_REPO = get_spec(TIMM_FACE).weights.location


def _cvlface_model(seed: int = 3, dim: int = 32, depth: int = 2) -> FaceViT:
    """A small FaceViT of the CVLFace family (8-px patches): the real ViT-B is 460 MB, too big for tests."""
    torch.manual_seed(seed)
    model = FaceViT(patch_size=8, embed_dim=dim, depth=depth, num_heads=4, mlp_ratio=3.0, out_dim=16).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.05)
    return model


def cvlface_repo(model: FaceViT, *, prefix: str = "model.net.", extra: dict | None = None, safetensors: bool = True):
    """Files of a CVLFace model repo: the wrapper's state dict (keys prefixed), config.json, pretrained_model/."""
    state = {f"{prefix}{k}": v.contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    state.update(extra or {})
    buffer = io.BytesIO()
    torch.save({k[len(prefix):]: v for k, v in state.items()}, buffer)
    files = {
        "config.json": json.dumps({"num_heads": 4, "architectures": ["CVLFaceViTModel"]}).encode(),
        "wrapper.py": b"raise SystemExit('repository code must never run')\n",
        "pretrained_model/model.pt": buffer.getvalue(),
        "pretrained_model/config.yaml": b"name: vit_base\n",
    }
    if safetensors:
        files["model.safetensors"] = save(state)
    return files


def timm_repo(seed: int = 5) -> tuple[dict[str, bytes], torch.nn.Module]:
    """Files of a timm hf-hub repo of the gaunernst layout (a 2-block ViT-Ti, so the test stays small)."""
    import timm

    model_args = {"patch_size": 8, "img_size": 112, "class_token": False, "global_pool": "avg", "depth": 2}
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=512, **model_args).eval()
    config = {
        "architecture": "vit_tiny_patch16_224", "num_classes": 512, "num_features": 192, "global_pool": "avg",
        "model_args": model_args,
        "pretrained_cfg": {"tag": "cosface_ms1mv3", "custom_load": False, "input_size": [3, 112, 112],
                           "fixed_input_size": True, "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
                           "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "num_classes": 512, "pool_size": None,
                           "first_conv": "patch_embed.proj", "classifier": "head"},
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return {"config.json": json.dumps(config).encode(), "model.safetensors": save(state)}, model


def _env(tmp_path: Path, hub: HubServer | None, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ATTN_FIQA_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), ATTN_FIQA_HOME=str(tmp_path / "home"), GRADIO_ANALYTICS_ENABLED="False",
               PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attn_core", *args], env=env, capture_output=True, text=True,
                          timeout=240, cwd=ROOT)


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _expected_score(files: dict[str, bytes], tmp_path: Path, name: str = "model.safetensors") -> float:
    """The same checkpoint loaded from a local file (no Hub), scored in this process: what the download must give."""
    folder = tmp_path / "expected"
    folder.mkdir(exist_ok=True)
    (folder / name.split("/")[-1]).write_bytes(files[name])
    (folder / "config.json").write_bytes(files["config.json"])
    model = FaceQualityModel(load_backbone(ONLINE_DEFAULT, weights=folder / name.split("/")[-1], device="cpu"))
    return model.score_image(str(PHOTO))[0].score


def test_first_use_downloads_the_default_then_runs_offline_with_zero_requests(tmp_path: Path) -> None:
    files = cvlface_repo(_cvlface_model())
    with HubServer({CVLFACE: files}) as hub:
        env = _env(tmp_path, hub)
        first = cli(env, "score", "--precision", "fp32", str(PHOTO), "--out", str(tmp_path / "first.csv"))
        assert first.returncode == 0, first.stderr
        assert "model.safetensors" in first.stderr and "%|" in first.stderr  # huggingface_hub's progress bar
        assert len(hub.state.downloads("model.safetensors")) == 1
        assert not any("wrapper.py" in r.path for r in hub.state.requests)  # repo code is never fetched
        (row,) = _rows(tmp_path / "first.csv")
        assert row["backbone"].startswith(ONLINE_DEFAULT)
        assert row["weights"] == "model.safetensors"
        assert row["weights_sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
        assert float(row["score"]) == pytest.approx(_expected_score(files, tmp_path), rel=1e-5)

        before = len(hub.state.requests)
        second = cli(env, "score", "--precision", "fp32", str(PHOTO), "--out", str(tmp_path / "second.csv"))
        assert second.returncode == 0, second.stderr
        assert len(hub.state.requests) == before  # cached: not a single request
        assert _rows(tmp_path / "second.csv")[0]["score"] == row["score"]
    # And with the server gone and offline mode on, the cache alone serves it.
    third = cli(_env(tmp_path, None, offline=True), "score", "--precision", "fp32", str(PHOTO), "--out", str(tmp_path / "third.csv"))
    assert third.returncode == 0, third.stderr
    assert _rows(tmp_path / "third.csv")[0]["score"] == row["score"]


def test_fetch_list_and_fetch_without_a_name(tmp_path: Path) -> None:
    listing = cli(_env(tmp_path, None, offline=True), "fetch", "--list")
    assert listing.returncode == 0, listing.stderr
    for name in (ONLINE_DEFAULT, "timm-face-vit-ti-arcface", "timm-face-vit-ti-adaface", "timm-face-vit-s-cosface"):
        assert name in listing.stdout
    assert "460 MB" in listing.stdout and CVLFACE in listing.stdout and "WebFace4M, research only" in listing.stdout
    files = cvlface_repo(_cvlface_model())
    with HubServer({CVLFACE: files}) as hub:
        fetched = cli(_env(tmp_path, hub), "fetch")
    assert fetched.returncode == 0, fetched.stderr
    assert ONLINE_DEFAULT in fetched.stdout
    path = Path(fetched.stdout.strip().split("weights at ")[-1])
    assert path.read_bytes() == files["model.safetensors"] and str(tmp_path / "hf") in str(path)


def test_dropped_connections_resume_and_a_failed_download_caches_nothing(tmp_path: Path) -> None:
    # 29 MB: huggingface_hub writes in 10 MB chunks, and a drop halfway must leave one written for a resume.
    files = cvlface_repo(_cvlface_model(dim=192, depth=1))
    expected = hashlib.sha256(files["model.safetensors"]).hexdigest()
    with HubServer({CVLFACE: files}) as hub:
        env = _env(tmp_path, hub)
        hub.state.drops["model.safetensors"] = 100  # every attempt of this run dies halfway
        failed = cli(env, "fetch", ONLINE_DEFAULT)
        assert failed.returncode == 2
        message = failed.stderr.strip().splitlines()[-1]
        assert "interrupted" in message and CVLFACE in message and "run the same command again" in message, failed.stderr
        assert "Traceback" not in failed.stderr
        repo = tmp_path / "hf" / "hub" / f"models--{CVLFACE.replace('/', '--')}"
        assert [p for p in repo.rglob("*") if p.is_file() and p.parent.name != "refs"] == []  # no corrupt cache
        tries = hub.state.downloads("model.safetensors")
        assert len(tries) > 1 and all(r.range and int(r.range.split("=")[1].split("-")[0]) > 0 for r in tries[1:])

        hub.state.drops["model.safetensors"] = 2  # a flaky network: two drops, then it holds
        before = len(hub.state.downloads("model.safetensors"))
        resumed = cli(env, "fetch", ONLINE_DEFAULT)
        assert resumed.returncode == 0, resumed.stderr
        ranges = [r.range for r in hub.state.downloads("model.safetensors")[before:]]
        assert len(ranges) == 3 and ranges[0] is None and all(r and not r.startswith("bytes=0-") for r in ranges[1:])
        path = Path(resumed.stdout.strip().split("weights at ")[-1])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected


def test_missing_and_gated_repos_name_the_repo(tmp_path: Path) -> None:
    with HubServer({}, gated={CVLFACE}) as hub:
        env = _env(tmp_path, hub)
        gated = cli(env, "fetch", ONLINE_DEFAULT)
        missing = cli(env, "fetch", "timm-face-vit-ti-arcface")
        scored = cli(env, "score", "--precision", "fp32", str(PHOTO), "--backbone", "timm-face-vit-ti-adaface")
    assert gated.returncode == 2 and f"{CVLFACE} on {hub.url} is gated" in gated.stderr
    assert missing.returncode == 2 and "gaunernst/vit_tiny_patch8_112.arcface_ms1mv3" in missing.stderr
    assert "was not found (404)" in missing.stderr
    assert scored.returncode == 2 and "gaunernst/vit_tiny_patch8_112.adaface_ms1mv3" in scored.stderr
    for result in (gated, missing, scored):
        assert "Traceback" not in result.stderr


def test_offline_without_a_cache_says_so_in_one_line(tmp_path: Path) -> None:
    result = cli(_env(tmp_path, None, offline=True), "score", "--precision", "fp32", str(PHOTO))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "No face-trained backbone is installed" in line and "offline mode is on (HF_HUB_OFFLINE=1)" in line
    assert "attn-fiqa fetch" in line and "--weights FILE" in line


def test_unreachable_hub_is_reported_not_hung(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    env = _env(tmp_path, None) | {"HF_ENDPOINT": dead}
    began = time.monotonic()
    result = cli(env, "fetch")
    # One quick check first (issue 22): no ~25 s of retries; tests/test_first_run.py bounds the time tightly.
    assert result.returncode == 2 and "is not reachable" in result.stderr and CVLFACE in result.stderr
    assert "HF_HUB_OFFLINE=1" in result.stderr and "--offline" in result.stderr
    assert time.monotonic() - began < 60


def test_checkpoint_keys_that_do_not_fit_are_listed(tmp_path: Path) -> None:
    files = cvlface_repo(_cvlface_model(), extra={"model.net.head.weight": torch.zeros(3, 3)})
    with HubServer({CVLFACE: files}) as hub:
        result = cli(_env(tmp_path, hub), "score", "--precision", "fp32", str(PHOTO), "--backbone", ONLINE_DEFAULT)
    assert result.returncode == 2 and "unexpected keys: head.weight" in result.stderr, result.stderr


def test_prefix_is_tolerated_and_the_pt_file_is_the_fallback(tmp_path: Path) -> None:
    model = _cvlface_model()
    files = cvlface_repo(model, prefix="net.", safetensors=False)  # no model.safetensors: pretrained_model/model.pt
    with HubServer({CVLFACE: files}) as hub:
        result = cli(_env(tmp_path, hub), "score", "--precision", "fp32", str(PHOTO), "--backbone", ONLINE_DEFAULT, "--out",
                     str(tmp_path / "s.csv"))
        assert any(r.path.endswith("/pretrained_model/model.pt") for r in hub.state.downloads())
    assert result.returncode == 0, result.stderr
    (row,) = _rows(tmp_path / "s.csv")
    assert row["weights"] == "model.pt"
    assert float(row["score"]) == pytest.approx(_expected_score(files, tmp_path, "pretrained_model/model.pt"), rel=1e-5)


def test_timm_face_vit_fetched_then_built_by_timms_own_loader(tmp_path: Path) -> None:
    files, model = timm_repo()
    with HubServer({TIMM_REPO: files}) as hub:
        env = _env(tmp_path, hub)
        first = cli(env, "score", "--precision", "fp32", str(PHOTO), "--backbone", TIMM_FACE, "--out", str(tmp_path / "t.csv"))
        assert first.returncode == 0, first.stderr
        assert {"config.json", "model.safetensors"} <= {r.path.rsplit("/", 1)[-1] for r in hub.state.downloads()}
        before = len(hub.state.requests)
        again = cli(env, "score", "--precision", "fp32", str(PHOTO), "--backbone", TIMM_FACE, "--out", str(tmp_path / "t2.csv"))
        assert again.returncode == 0, again.stderr
        assert len(hub.state.requests) == before
    (row,) = _rows(tmp_path / "t.csv")
    assert row["weights_sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
    # Independent computation: the served model's last block, pre-softmax logits by hand, mean over h, i, j.
    from attn_core.faces import extract_faces

    face = extract_faces(str(PHOTO))[0].aligned
    images = (torch.from_numpy(face).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        tokens = model.norm_pre(model._pos_embed(model.patch_embed(images)))
        for block in model.blocks[:-1]:
            tokens = block(tokens)
        last = model.blocks[-1]
        qkv = last.attn.qkv(last.norm1(tokens)).reshape(1, tokens.shape[1], 3, 3, 64).permute(2, 0, 3, 1, 4)
        logits = (qkv[0] @ qkv[1].transpose(-1, -2)) * 64**-0.5
    assert float(row["score"]) == pytest.approx(float(logits.mean()), rel=1e-4)
    assert _rows(tmp_path / "t2.csv")[0]["score"] == row["score"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_app_first_use_downloads_with_progress_and_starts_at_once(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    files = cvlface_repo(_cvlface_model())
    with HubServer({CVLFACE: files}) as hub:
        port = _free_port()
        app = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--precision", "fp32"],
                               env=_env(tmp_path, hub), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            began = time.monotonic()
            client = None
            while time.monotonic() - began < 90 and client is None:
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                except Exception:
                    time.sleep(0.5)
            assert client is not None, "the app did not answer"
            assert hub.state.downloads() == []  # serving did not wait for any download
            status = client.predict(ONLINE_DEFAULT, False, api_name="/backbone_info")[0]
            assert "downloaded on first use" in status and "460 MB" in status
            details = client.predict(handle_file(str(PHOTO)), ONLINE_DEFAULT, False, -1, [], "mean", "all", 0, -1,
                                     "jet", 0.4, "per image", None, None, False, api_name="/inspect")[8]
            assert len(hub.state.downloads("model.safetensors")) == 1
            status = client.predict(ONLINE_DEFAULT, False, api_name="/backbone_info")[0]
            assert "Trained weights installed" in status  # the status line no longer promises a download
            assert details["weights_sha256"] == hashlib.sha256(files["model.safetensors"]).hexdigest()
            assert details["score"] == pytest.approx(_expected_score(files, tmp_path), rel=1e-5)
        finally:
            app.terminate()
            app.wait(timeout=30)


def test_app_serves_the_users_own_weights(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    model = _cvlface_model(seed=8)
    weights = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    port = _free_port()
    app = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--precision", "fp32", "--weights",
                            str(weights), "--num-heads", "4"], env=_env(tmp_path, None, offline=True), cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        began, client = time.monotonic(), None
        while time.monotonic() - began < 90 and client is None:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            except Exception:
                time.sleep(0.5)
        assert client is not None
        name = f"face-vit@{weights.name}"
        details = client.predict(handle_file(str(PHOTO)), name, False, -1, [], "mean", "all", 0, -1, "jet", 0.4,
                                 "per image", None, None, False, api_name="/inspect")[8]
        expected = FaceQualityModel(load_backbone(weights=weights, num_heads=4, device="cpu")).score_image(str(PHOTO))[0]
        assert details["score"] == pytest.approx(expected.score, rel=1e-5)
        assert details["weights_file"] == weights.name
    finally:
        app.terminate()
        app.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "app", "--weights", str(tmp_path / "absent.pt")],
                         env=_env(tmp_path, None, offline=True), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
