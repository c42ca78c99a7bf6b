"""The app over real HTTP (gradio_client), every tab, checked against attn_core called directly on the same inputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from attn_core.eval import DEMO_IMPOSTORS_PER_GENUINE, demo_set_folder, run_eval  # noqa: E402
from attn_core.eval.edc import format_fmr, undefined_reason  # noqa: E402
from attn_core.eval.matcher import cosine, get_matcher  # noqa: E402
from attn_core.faces.degradations import DEGRADATIONS, degrade  # noqa: E402
from attn_core.scoring.model import FaceQualityModel, ScoreOptions  # noqa: E402
from attn_core.viz import colorize, crop_overlay  # noqa: E402
from attn_core.zoo.registry import DEFAULT_BACKBONE, get_spec, weights_available  # noqa: E402

pytestmark = [
    pytest.mark.timeout(300),
    # gradio's queue calls a pandas option that pandas 3 deprecates; not ours to fix.
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]

EXAMPLES = Path(__file__).resolve().parent.parent / "assets" / "examples"
PHOTO = str(EXAMPLES / "person_a_1.jpg")
TINY = "test-face-vit-p8"
TINY9 = "test-face-vit-p9"
# The app scores a face in a batch of one while the core is called here on a batch of several (or vice versa):
# float32 matmuls reduce in a different order for different batch shapes, so results agree to float32 rounding,
# not bit for bit (differences of ~1e-9 seen on one machine). A wrong block, head or token mode moves a score by
# 1e-3 or more, far outside this.
FORWARD_TOL = {"rel": 1e-5, "abs": 1e-6}

# Positional order of the /inspect and /rerender inputs.
INSPECT_DEFAULTS = dict(block=2, heads=[], aggregation="mean", tokens="all", face_index=0, view=-1, colormap="jet",
                        opacity=0.4, normalisation="per image", vmin=None, vmax=None, centre_crop=False)


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.local_url, verbose=False)


@pytest.fixture(scope="module")
def tiny() -> FaceQualityModel:
    return FaceQualityModel(TINY, random_init=True)


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _inspect(client: Client, image=PHOTO, backbone=TINY, random_weights=True, api_name="/inspect", **changes):
    values = {**INSPECT_DEFAULTS, **changes}
    return client.predict(handle_file(image), backbone, random_weights, *values.values(), api_name=api_name)


def test_every_ui_function_is_a_named_endpoint(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/inspect", "/rerender", "/backbone_info", "/inspect_after_backbone_change", "/degrade", "/degrade_heads", "/sweep",
            "/compare", "/batch", "/evaluate", "/about"} <= names


def test_queue_bounds_concurrency_and_waiting(server):
    from app import ui

    assert server._queue.max_size == ui.QUEUE_SIZE
    assert server._queue.default_concurrency_limit == ui.CONCURRENCY
    assert server.config["components"]  # built, and bound to localhost by default
    assert server.local_url.startswith("http://127.0.0.1:")


def test_inspect_matches_core(client, tiny):
    boxes, crop, on_crop, on_photo, raw, score_md, gallery, faces_md, details = _inspect(client)
    (expected,) = tiny.score_image(PHOTO, ScoreOptions(block=2), all_faces=True)
    assert details["score"] == pytest.approx(expected.score, **FORWARD_TOL)
    assert np.allclose(details["head_scores"], expected.head_scores, rtol=FORWARD_TOL["rel"], atol=FORWARD_TOL["abs"])
    assert f"{expected.score:+.4f}" in score_md and "higher" in score_md.lower()
    assert "Random weights" in score_md
    assert details["precision"] == "fp32"  # the app's default: exact maps
    assert np.array_equal(_png(crop), expected.face.aligned)
    assert np.array_equal(_png(on_crop), crop_overlay(expected.face.aligned, expected.patch_map, tiny.spec))
    assert _png(boxes).shape == _png(on_photo).shape == expected.face.image.shape
    assert _png(raw).ndim == 3
    assert f"{expected.face.num_faces} face(s) found" in faces_md
    assert len(gallery) == tiny.spec.num_heads
    assert gallery[1]["caption"] == f"head 1: {expected.head_scores[1]:+.4f}"
    # The score's context: the bundled example set, scored by the same backbone and options.
    example_scores = [r.score for r in tiny.score_image(str(EXAMPLES / "astronaut.jpg"), ScoreOptions(block=2))]
    assert any(s == pytest.approx(example_scores[0], **FORWARD_TOL) for s in details["example_scores"])
    below = sum(s < expected.score for s in details["example_scores"])
    assert f"higher than **{below} of {len(details['example_scores'])}**" in score_md


def test_picker_labels_follow_a_download(monkeypatch):
    from app import models

    spec = models.get_spec("cvlface-vit-b-adaface")
    monkeypatch.setattr(models, "weights_available", lambda s: False)
    monkeypatch.setattr(models, "downloadable", lambda s: True)
    before = dict((value, label) for label, value in models.backbone_choices())[spec.name]
    assert "downloaded on first use" in before
    monkeypatch.setattr(models, "weights_available", lambda s: s.name == spec.name)  # the download happened
    _, picker = models.after_score(spec.name, False)
    labels = dict((value, label) for label, value in picker["choices"])
    assert "weights installed" in labels[spec.name] and picker["value"] == spec.name


def test_launch_precision_reaches_every_model(monkeypatch):
    from app import models

    monkeypatch.setitem(models._launch, "precision", "fp32")
    models.set_precision("bf16")
    model = models.load_model("test-face-vit-p8", True)
    assert model.precision == "bf16" and models.serving_precision() == "bf16"
    (result,) = model.score_faces(np.zeros((1, 112, 112, 3), np.uint8))
    assert result.precision == "bf16" and models.weights_text(result).endswith(", bf16")
    with pytest.raises(ValueError, match="Unknown precision"):
        models.set_precision("int4")


def test_controls_rerender_without_a_forward_pass(client, tiny, forward_passes):
    (base,) = tiny.score_image(PHOTO, ScoreOptions(block=2), all_faces=True)  # the reference, before counting
    (core0,) = tiny.score_image(PHOTO, ScoreOptions(block=0))
    _inspect(client)  # scored (or cached) once
    before = forward_passes.count
    out = _inspect(client, api_name="/rerender", heads=[0, 2], aggregation="median", view=1, colormap="viridis",
                   opacity=0.7)
    assert forward_passes.count == before
    expected = base.with_options(heads=(0, 2), aggregation="median")
    assert out[8]["score"] == pytest.approx(expected.score, **FORWARD_TOL)
    assert out[8]["heads"] == [0, 2]
    # view=1: the maps show head 1 alone.
    assert np.array_equal(_png(out[2]), crop_overlay(base.face.aligned, base.head_maps[1], tiny.spec, cmap="viridis",
                                                     alpha=0.7))
    # A fixed range: blank bounds come from the example set, given bounds are used as they are.
    fixed = _inspect(client, api_name="/rerender", normalisation="fixed range", vmin=-1.0, vmax=1.0)
    assert np.array_equal(_png(fixed[2]), crop_overlay(base.face.aligned, base.patch_map, tiny.spec,
                                                       normalisation="fixed", value_range=(-1.0, 1.0)))
    assert forward_passes.count == before
    # Another block needs a forward pass (the photo cache emptied first: an earlier test may have scored this photo
    # at block 0 in this server, and the cache would rightly serve it without one).
    from app import photos

    photos._photo_cache.clear()
    block0 = _inspect(client, api_name="/rerender", block=0)
    assert forward_passes.count > before
    assert block0[8]["score"] == pytest.approx(core0.score, **FORWARD_TOL) and block0[8]["block"] == 0


def test_prefix_tokens_all_or_patch_only(client):
    """A ViT with a class token: the token mode re-summarises the same forward pass."""
    from attn_core.zoo.registry import TIMM_TEST_MODEL

    name = f"timm:{TIMM_TEST_MODEL}"
    (base,) = FaceQualityModel(name, random_init=True).score_image(PHOTO, all_faces=True)
    every = _inspect(client, backbone=name, block=-1)[8]
    patch = _inspect(client, backbone=name, block=-1, api_name="/rerender", tokens="patch")[8]
    assert every["score"] == pytest.approx(base.score, **FORWARD_TOL)
    assert patch["score"] == pytest.approx(base.with_options(tokens="patch").score, **FORWARD_TOL)
    assert patch["tokens"] == "patch" and patch["score"] != pytest.approx(every["score"])


def test_default_backbone_uses_installed_weights_else_online_else_says_why(monkeypatch):
    from app import models
    from attn_core.zoo import ONLINE_DEFAULT, check_reachable

    monkeypatch.setattr(models, "installed_default", lambda: "cvlface-vit-s-adaface")
    assert models.startup_state() == models.Startup("cvlface-vit-s-adaface", False, None)

    # Nothing installed, the Hub answers: the method's ViT-B, downloaded on first use (tests/test_hub.py does it).
    monkeypatch.setattr(models, "installed_default", lambda: None)
    monkeypatch.setattr(models, "check_reachable", lambda repo: None)
    assert models.startup_state() == models.Startup(ONLINE_DEFAULT, False, None)

    # Nothing installed, offline: the banner gives the exact reason and only options that exist.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "check_reachable", check_reachable)  # the real one: it reads HF_HUB_OFFLINE
    startup = models.startup_state()
    assert startup.default_backbone == ONLINE_DEFAULT and not startup.default_random  # never an unshipped one
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in startup.missing_message
    assert "attn-fiqa app --weights FILE" in startup.missing_message and "attn-fiqa fetch" in startup.missing_message


def _inspect_refused(client: Client, **changes) -> str:
    """A request that cannot run: its one sentence in the score box, every picture empty, no error raised."""
    out = _inspect(client, **changes)
    assert out[:5] == (None,) * 5 and out[6] == [] and out[5].startswith("**")
    assert "Traceback" not in out[5]
    return out[5]


def test_random_weights_are_never_silent(client):
    assert "random weights" in _inspect_refused(client, random_weights=False)
    if not weights_available(get_spec(DEFAULT_BACKBONE)):
        assert "Or tick" in _inspect_refused(client, backbone=DEFAULT_BACKBONE, random_weights=False)


def test_errors_are_one_plain_sentence(client, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    assert "Cannot load" in _inspect_refused(client, image=str(broken))
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 127, np.uint8)).save(blank)
    assert "No face found" in _inspect_refused(client, image=str(blank))
    assert "Face 3 does not exist" in _inspect_refused(client, face_index=3)
    assert "inv_std" in _inspect_refused(client, heads=[1], aggregation="inv_std")
    centre = _inspect(client, image=str(blank), centre_crop=True)
    assert "centre square" in centre[7]


def test_backbone_info_and_about(client):
    status, block, heads, view, tokens, card = client.predict(TINY9, True, api_name="/backbone_info")
    assert "Random weights" in status
    assert block["maximum"] == get_spec(TINY9).depth - 1
    assert [value for _, value in heads["choices"]] == list(range(get_spec(TINY9).num_heads))
    assert tokens["interactive"] is False  # no prefix tokens
    assert TINY9 in card and "12x12" in card
    assert TINY9 in client.predict(TINY9, api_name="/about")


def test_degradation_matches_core(client, tiny):
    clean, clean_map, damaged, damaged_map, key, summary, details = client.predict(
        handle_file(PHOTO), "gaussian_blur", 0.5, 3, TINY, True, 2, [], "mean", "all", "jet", 0.4, False,
        api_name="/degrade")
    (base,) = tiny.score_image(PHOTO, ScoreOptions(block=2))
    expected_crop = degrade(base.face.aligned, "gaussian_blur", 0.5, 3)
    assert np.array_equal(_png(clean), base.face.aligned)
    assert np.array_equal(_png(damaged), expected_crop)
    (expected,) = tiny.score_faces(expected_crop, ScoreOptions(block=2))
    assert details["clean_score"] == pytest.approx(base.score, **FORWARD_TOL)
    assert details["degraded_score"] == pytest.approx(expected.score, **FORWARD_TOL)
    sface = get_matcher("sface")
    utility = float(cosine(*sface.embed([base.face.aligned, expected_crop])))
    assert details["sface_cosine"] == pytest.approx(utility, abs=1e-6)
    assert "SFace" in summary and f"{utility:.3f}" in summary
    assert _png(clean_map).shape == _png(damaged_map).shape == (112, 112, 3)
    # Item 12: the shared colour range has a key: a bar from the colormap's low end (left) to its high end (right).
    bar = _png(key)
    assert bar.shape[1] > 4 * bar.shape[0]
    row = bar[26 + 9]  # the middle of the bar (26 px of label above it)
    assert np.array_equal(row[14], colorize(np.array([0.0]), "jet")[0])
    assert np.array_equal(row[bar.shape[1] - 15], colorize(np.array([1.0]), "jet")[0])


def test_degradation_per_head_change_matches_core(client, tiny):
    """Issue 20: /degrade_heads shows every head's map, degraded minus clean, and its head score change."""
    from attn_core.lab import head_changes

    picture, numbers = client.predict(handle_file(PHOTO), "occlude_eyes", 0.8, 1, TINY, True, 2, [], "mean", "all",
                                      False, api_name="/degrade_heads")
    (base,) = tiny.score_image(PHOTO, ScoreOptions(block=2))
    from attn_core.eval import crop_landmarks

    damaged_crop = degrade(base.face.aligned, "occlude_eyes", 0.8, 1, landmarks=crop_landmarks(base.face))
    (damaged,) = tiny.score_faces(damaged_crop, ScoreOptions(block=2))
    expected = head_changes(base, damaged)
    np.testing.assert_allclose(numbers["score_change"], expected.score_change, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(numbers["difference_maps"], expected.difference_maps, rtol=1e-3, atol=1e-5)
    assert numbers["colour_range"][0] == -numbers["colour_range"][1] == pytest.approx(-expected.limit, rel=1e-4)
    assert numbers["block"] == 2 and _png(picture).shape[1] > 600


def test_sweep_covers_every_degradation(client, tiny):
    plot, table = client.predict(handle_file(PHOTO), 0, TINY, True, 2, [], "mean", "all", False, api_name="/sweep")
    assert set(table) == set(DEGRADATIONS)
    (base,) = tiny.score_image(PHOTO, ScoreOptions(block=2))
    for curve in table.values():
        assert curve["strength"][0] == 0.0 and curve["score"][0] == pytest.approx(base.score, **FORWARD_TOL)
        assert len(curve["score"]) == len(curve["sface_cosine"]) == 6
    (noisy,) = tiny.score_faces(degrade(base.face.aligned, "noise", 0.6, 0), ScoreOptions(block=2))
    assert table["noise"]["score"][3] == pytest.approx(noisy.score, **FORWARD_TOL)
    assert _png(plot).shape[1] > 600


def test_compare_backbones(client, tiny):
    gallery, table = client.predict(handle_file(PHOTO), [TINY, TINY9], True, "jet", 0.4, False, api_name="/compare")
    rows = {row[0]: row for row in table["data"]}
    for name in (TINY, TINY9):
        (expected,) = FaceQualityModel(name, random_init=True).score_image(PHOTO)
        assert rows[name][1] == pytest.approx(expected.score, abs=1e-6)
        assert rows[name][7] == ""
    assert rows[TINY9][3] == "12x12" and rows[TINY][3] == "14x14"
    assert len(gallery) == 2 and TINY in gallery[0]["caption"]
    # Without the random opt-in, a backbone without weights is a row with its reason, not a crash.
    _, table = client.predict(handle_file(PHOTO), [TINY], False, "jet", 0.4, False, api_name="/compare")
    assert table["data"][0][1] is None and "random" in table["data"][0][7]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_batch_ranks_reports_errors_and_writes_csv(client, tiny, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    faceless = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(faceless)
    archive = _zip(tmp_path / "faces.zip", {"inner/astronaut.jpg": (EXAMPLES / "astronaut.jpg").read_bytes(),
                                             "notes.txt": b"hello"})
    bomb = _zip(tmp_path / "bomb.zip", {"huge.png": bytes(60 * 2**20)})  # 60 MiB of zeros, tiny compressed
    inputs = [EXAMPLES / "person_a_1.jpg", EXAMPLES / "person_b_1.jpg", broken, faceless, archive, bomb]
    table, lowest, highest, csv_file, summary = client.predict(
        [handle_file(str(p)) for p in inputs], TINY, True, 2, [], "mean", "all", "jet", 0.4, False, api_name="/batch")
    rows = table["data"]
    scored = [row for row in rows if row[3] == ""]
    failed = {row[0]: row[3] for row in rows if row[3] != ""}
    assert [row[1] for row in scored] == sorted((row[1] for row in scored), reverse=True)
    assert {row[0] for row in scored} == {"person_a_1.jpg", "person_b_1.jpg", "faces.zip/inner/astronaut.jpg"}
    expected = {p.name: r.result.score for p, r in zip(
        [EXAMPLES / "person_a_1.jpg", EXAMPLES / "person_b_1.jpg", EXAMPLES / "astronaut.jpg"],
        tiny.score_files([EXAMPLES / "person_a_1.jpg", EXAMPLES / "person_b_1.jpg", EXAMPLES / "astronaut.jpg"],
                         ScoreOptions(block=2)))}
    for row in scored:
        assert row[1] == pytest.approx(expected[row[0].split("/")[-1]], abs=1e-6)
    assert "Cannot load" in failed["broken.jpg"]
    assert "No face found" in failed["blank.png"]
    # Item 11: the app's checkbox, not the library's argument, and never a server path.
    assert "tick 'If no face is found, score the centre square'" in failed["blank.png"]
    assert "on_no_face" not in failed["blank.png"] and "/tmp" not in " ".join(failed.values())
    assert "Not an image" in failed["faces.zip/notes.txt"]
    assert "limit" in failed["bomb.zip/huge.png"]
    assert len(lowest) == len(highest) == 3
    assert highest[0]["caption"] == f"{scored[0][1]:+.4f} {scored[0][0].rsplit('/', 1)[-1]}"  # the member's own name
    assert all("faces.zip" not in picture["caption"] for picture in lowest + highest)
    with open(csv_file, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [r["file"] for r in written] == [row[0] for row in rows]
    assert float(written[0]["score"]) == pytest.approx(scored[0][1], abs=1e-6)
    assert "3" in summary and "4" in summary


def test_zip_limits(tmp_path):
    from app import uploads

    many = _zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(uploads.MAX_ZIP_MEMBERS + 1)})
    inputs = uploads.collect_batch([str(many)])
    assert not inputs.files and "limit" in inputs.errors[0][1]
    shutil.rmtree(inputs.folder)


EVAL_MODES = ["per_fraction", "fixed"]


def _evaluate(client: Client, source="demo", data_zip=None, backbones=(TINY,), random_weights=True, matcher="sface",
              fmrs=(1e-3,), modes=EVAL_MODES):
    return client.predict(source, None if data_zip is None else handle_file(str(data_zip)), list(backbones),
                          random_weights, matcher, list(fmrs), list(modes), api_name="/evaluate")


def _table_rows(markdown: str) -> list[list[str]]:
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()
            if line.startswith("| ")]
    return [row for row in rows if row[0] != "Method"]  # without the headers


def _assert_same_evaluation(outputs, expected) -> None:
    """The tab shows exactly what run_eval computed: table rows, plots, warnings, verdicts and the eval.json curves."""
    plots, table, warnings, downloads = outputs
    rows = _table_rows(table)
    assert len(rows) == len(expected.curves)
    for row, curve in zip(rows, expected.curves):
        assert row[0] == curve.method and row[1] == format_fmr(curve.fmr)
        undefined = f"undefined ({undefined_reason(curve)})"  # never "nan": the reason instead
        assert row[3] == f"{curve.fnmr[0]:.4f}"
        assert row[4] == (f"{curve.auc:.4f}" if np.isfinite(curve.auc) else undefined)
        assert row[5] == (f"{1000 * curve.pauc:.2f}" if np.isfinite(curve.pauc) else undefined)
    assert f"**{expected.n_pairs_used} pairs**" in warnings
    assert [plot["caption"] for plot in plots] == [path.name for path in expected.plot_paths]
    assert all(_png(plot["image"]).shape[0] > 200 for plot in plots)
    for line in expected.warnings + expected.verdicts:
        assert line in warnings
    assert sorted(Path(path).name for path in downloads) == ["eval.json", "eval.md", "eval_files.csv"]
    written = json.loads(Path(next(p for p in downloads if p.endswith("eval.json"))).read_text())
    for key in ("curves", "pairs", "quality_models", "verdicts", "warnings"):
        assert written[key] == expected.summary[key], key


def test_evaluate_demo_set_matches_run_eval(client, tmp_path):
    """The bundled demo set (London Set crops, one of each pair degraded) gives defined curves: 102 genuine pairs,
    10,200 impostors (FMR 1e-3 resolved), no "nan" anywhere; the constant face-size baseline says why it has no curve."""
    outputs = _evaluate(client)
    expected = run_eval(demo_set_folder(tmp_path), [TINY], "sface", tmp_path / "out", random_init=True,
                        fmrs=[1e-3], threshold_modes=EVAL_MODES, use_cache=False,
                        impostors_per_genuine=DEMO_IMPOSTORS_PER_GENUINE, data_name="demo")
    _assert_same_evaluation(outputs, expected)
    assert expected.summary["pairs"] | {"dropped": 0} == {"total": 10302, "used": 10302, "dropped": 0,
                                                          "genuine": 102, "impostor": 10200}
    assert not any("is not resolved" in w for w in expected.warnings)
    assert any(w.startswith("face size (box area) gives every pair the same quality") for w in expected.warnings)
    assert "nan" not in outputs[1].lower() and "real identities, synthetic degradations" in outputs[2]
    assert "Random weights" in outputs[2]


def test_evaluate_zip_of_identity_folders(client, tmp_path):
    photos = {"A": ["person_a_1.jpg", "person_a_2.jpg"], "B": ["person_b_1.jpg", "person_b_2.jpg"],
              "C": ["impostor_1.jpg"]}
    members = {f"faces/{who}/{name}": (EXAMPLES / name).read_bytes() for who, names in photos.items() for name in names}
    members |= {"__MACOSX/faces/A/._person_a_1.jpg": b"resource fork", "loose.jpg": b"x", "faces/A/notes.txt": b"hi"}
    archive = _zip(tmp_path / "people.zip", members)
    outputs = _evaluate(client, source="zip", data_zip=archive, fmrs=(1e-4,), modes=["fixed"])
    for who, names in photos.items():  # the same layout on disk, evaluated directly
        (tmp_path / "direct" / who).mkdir(parents=True)
        for name in names:
            shutil.copyfile(EXAMPLES / name, tmp_path / "direct" / who / name)
    expected = run_eval(tmp_path / "direct", [TINY], "sface", tmp_path / "out", random_init=True, fmrs=[1e-4],
                        threshold_modes=["fixed"], use_cache=False)
    _assert_same_evaluation(outputs, expected)
    warnings = outputs[2]
    assert "`people.zip/loose.jpg`: Not inside an identity folder" in warnings
    assert "`people.zip/faces/A/notes.txt`: Not an image" in warnings
    assert "MACOSX" not in warnings
    # The reports run_eval wrote name the user's archive and the files inside it, never the server's temp folders.
    downloads = outputs[3]
    written = json.loads(Path(next(p for p in downloads if p.endswith("eval.json"))).read_text())
    assert written["data"] == "people.zip"
    for path in downloads:
        assert "attn_fiqa_eval_" not in Path(path).read_text()
    listed = [row["path"] for row in csv.DictReader(open(next(p for p in downloads if p.endswith("eval_files.csv"))))]
    assert sorted(listed) == sorted(f"people.zip/faces/{who}/{name}" for who, names in photos.items() for name in names)


def test_evaluate_errors_are_plain_sentences(client, tmp_path):
    with pytest.raises(AppError, match="Or tick"):
        _evaluate(client, random_weights=False)
    with pytest.raises(AppError, match="Upload a zip"):
        _evaluate(client, source="zip")
    with pytest.raises(AppError, match="Tick at least one backbone"):
        _evaluate(client, backbones=())
    with pytest.raises(AppError, match="independent"):
        _evaluate(client, matcher="cvlface-vit-s-adaface", backbones=("cvlface-vit-s-adaface",))
    flat = _zip(tmp_path / "flat.zip", {"a.jpg": (EXAMPLES / "person_a_1.jpg").read_bytes()})
    with pytest.raises(AppError, match="no usable image inside an identity folder"):
        _evaluate(client, source="zip", data_zip=flat)
    single = _zip(tmp_path / "single.zip", {"A/a.jpg": (EXAMPLES / "person_a_1.jpg").read_bytes()})
    with pytest.raises(AppError, match="single.zip needs at least two identity") as caught:
        _evaluate(client, source="zip", data_zip=single)
    assert "attn_fiqa_eval" not in str(caught.value)  # names the user's zip, not our temporary folder


def test_cli_registers_app_command():
    from attn_core.cli.main import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)
    assert build_parser().parse_args(["app", "--host", "0.0.0.0", "--share"]).share is True


def test_python_dash_m_app_takes_the_same_options(monkeypatch):
    from app import cli

    seen = {}
    monkeypatch.setattr(cli, "cmd_app", lambda args: seen.update(vars(args)) or 0)
    assert cli.main(["--port", "9000"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 9000, "share": False, "weights": None, "backbone": "", "num_heads": None,
                    "auth": None, "ssl_certfile": None, "ssl_keyfile": None, "precision": "auto", "live_limit": None}


def test_only_listed_backbones_are_served(client):
    # A remote user must not make the server build arbitrary (multi-GB) timm models.
    assert "serves only the backbones its picker lists" in _inspect_refused(client, backbone="timm:vit_huge_patch14_224")


def test_errors_name_the_users_file_not_the_servers_upload_folder(client, tmp_path):
    broken = tmp_path / "my holiday.jpg"
    broken.write_text("not an image")
    message = _inspect_refused(client, image=str(broken))
    assert "my holiday.jpg" in message and "/gradio/" not in message
    from app.errors import public_message

    upload = os.path.join(tempfile.gettempdir(), "gradio", "ab" * 32, "me.jpg")
    assert public_message(f"Could not read {upload}: truncated") == "Could not read me.jpg: truncated"


def test_auth_is_required_when_asked(tmp_path):
    import subprocess
    import sys
    import time
    import urllib.request

    from conftest import _free_port

    port = _free_port()
    root = Path(__file__).resolve().parent.parent
    app = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--auth", "alice:s3cret"], cwd=root,
                           env=os.environ | {"PYTHONPATH": str(root)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, up = time.monotonic() + 300, False  # a busy CI machine may take minutes to import torch + gradio
        while not up and time.monotonic() < deadline and app.poll() is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                up = True
            except OSError:
                time.sleep(0.5)
        assert up, f"the app with --auth did not start (exit code {app.poll()})"
        with pytest.raises(Exception, match="credentials were not provided"):
            Client(f"http://127.0.0.1:{port}/", verbose=False)  # no credentials: refused
        logged_in = Client(f"http://127.0.0.1:{port}/", auth=("alice", "s3cret"), verbose=False)
        assert "/inspect" in logged_in.view_api(return_format="dict", print_info=False)["named_endpoints"]
    finally:
        app.terminate()
        app.wait(timeout=30)
    bad = subprocess.run([sys.executable, "-m", "app", "--auth", "alice"], cwd=root, capture_output=True, text=True,
                         env=os.environ | {"PYTHONPATH": str(root)}, timeout=120)
    assert bad.returncode == 2 and "--auth takes USER:PASSWORD" in bad.stderr
