"""The first five minutes (issue 22): offline or with an unreachable Hub, a newcomer's first click gives either a
working mechanics demo (one click) or one clear sentence, and every control does what it says."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attn_core import FaceQualityModel  # noqa: E402
from attn_core.zoo import ONLINE_DEFAULT, get_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
PHOTO = EXAMPLES / "person_a_1.jpg"
TINY = "test-face-vit-p8"


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unreachable_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HOME=str(tmp_path / "hf"),
               ATTN_FIQA_HOME=str(tmp_path / "home"))
    return env


def test_unreachable_hub_is_treated_exactly_as_offline(tmp_path):
    """HF_HUB_OFFLINE unset, the Hub a closed port: every label says 'not installed', nothing is promised."""
    script = f"""
from app import models
startup = models.startup_state()
labels = [label for label, _ in models.backbone_choices()]
status = models.backbone_status(startup.default_backbone, False)
assert startup.default_backbone == {ONLINE_DEFAULT!r}, startup
assert "is not reachable" in startup.missing_message, startup.missing_message
assert not any("first use" in label for label in labels), labels
assert any({ONLINE_DEFAULT!r} in label and "weights not installed" in label for label in labels), labels
assert "first use" not in status and "progress bar" not in status, status
assert status.startswith("**Weights not installed.** No trained weights for"), status
try:
    models.load_model({ONLINE_DEFAULT!r}, False)
except models.BackboneNotAvailable as error:
    message = str(error)
else:
    raise AssertionError("loaded without weights")
assert message.startswith("No trained weights for {ONLINE_DEFAULT} on this machine, and none can be downloaded"), message
assert "Online:" not in message and "random weights" in message, message
print("ok")
"""
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", script], env=_unreachable_env(tmp_path), capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "ok" in run.stdout
    assert time.monotonic() - started < 60  # one quick check, no 25-s retry loop per call


def _timed_cli(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "attn_core", *args], env=env, capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    return run, time.monotonic() - started


def test_fetch_with_unreachable_hub_fails_fast_naming_offline_mode(tmp_path):
    env = _unreachable_env(tmp_path)
    # The same process without any request (same imports: the CLI's parser loads torch), as the baseline: on a
    # shared 2-core machine the imports alone vary from 2.5 to 8 s; the Hub's part is what this test bounds.
    baseline_run, baseline = _timed_cli("fetch", "--list", env=env)
    assert baseline_run.returncode == 0, baseline_run.stderr
    run, elapsed = _timed_cli("fetch", env=env)
    assert run.returncode == 2, run.stderr
    assert elapsed < 5.0 + baseline, f"attn-fiqa fetch took {elapsed:.1f} s (imports alone {baseline:.1f} s)"
    assert elapsed - baseline < 3.0, f"the Hub check took {elapsed - baseline:.1f} s beyond the imports"
    message = run.stderr.strip()
    assert "Online:" not in message and "Without a connection:" in message
    assert message.startswith(f"attn-fiqa fetch: {ONLINE_DEFAULT} cannot be downloaded: the Hub at"), message
    assert "HF_HUB_OFFLINE=1" in message and "--offline" in message and "Traceback" not in message


def test_random_init_without_backbone_uses_the_default_architecture_and_says_so(tmp_path):
    from attn_core.cli.main import main
    from attn_core.zoo import DEFAULT_BACKBONE

    out = tmp_path / "scores.csv"
    run = subprocess.run([sys.executable, "-m", "attn_core", "score", str(PHOTO), "--random-init", "--out", str(out),
                          "--quiet", "--precision", "fp32"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Random weights" in run.stderr and f"of {DEFAULT_BACKBONE}, the default architecture" in run.stderr
    assert DEFAULT_BACKBONE in out.read_text() and "random" in out.read_text()
    assert main  # the CLI's entry point, imported above, is the one `attn-fiqa` runs
    model = FaceQualityModel("", random_init=True)
    assert model.spec.name == DEFAULT_BACKBONE and model.backbone.weights.startswith("random")


def test_no_weights_errors_name_both_ways_to_random_weights():
    from attn_core.zoo import BackboneNotAvailable, no_backbone_message

    message = no_backbone_message()
    assert "--random-init" in message and "random_init=True" in message
    with pytest.raises(BackboneNotAvailable) as caught:  # offline (conftest), nothing installed
        FaceQualityModel(ONLINE_DEFAULT)
    assert "--random-init" in str(caught.value) and "random_init=True" in str(caught.value)


def test_fixed_range_blank_means_blank_and_the_raw_map_follows_it():
    from app.tabs.inspect import _value_range
    from attn_core.viz import colorize, patch_map_image

    fallback = lambda: (-2.0, 3.0)  # noqa: E731
    assert _value_range("fixed range", "", "", fallback) == ("fixed", (-2.0, 3.0))
    assert _value_range("fixed range", None, " ", fallback) == ("fixed", (-2.0, 3.0))
    assert _value_range("fixed range", "-1", "", fallback) == ("fixed", (-1.0, 3.0))
    assert _value_range("fixed range", 0.5, 1.5, lambda: pytest.fail("no fallback needed")) == ("fixed", (0.5, 1.5))
    with pytest.raises(ValueError, match="vmin must be a number or blank"):
        _value_range("fixed range", "abc", "", fallback)
    # Raw map: a fixed range of (0, 10) puts a map of values 0..1 at the bottom tenth of the colormap.
    grid = np.array([[0.0, 1.0], [0.5, 1.0]])
    own = patch_map_image(grid, cmap="viridis", cell=20)
    fixed = patch_map_image(grid, cmap="viridis", cell=20, value_range=(0.0, 10.0))
    top, left = 26, 10  # the heat map's corner in patch_map_image's layout
    cell_of_one = (top + 5, left + 25)
    assert tuple(own[cell_of_one]) == tuple(colorize(np.array([[1.0]]), "viridis")[0, 0])
    assert tuple(fixed[cell_of_one]) == tuple(colorize(np.array([[0.1]]), "viridis")[0, 0])


def test_the_head_shown_is_described_by_what_is_true_of_it():
    from app.tabs.inspect import MEAN_VIEW, _map_sentence

    model = FaceQualityModel(TINY, random_init=True)
    (base,) = model.score_image(str(PHOTO))
    result = base.with_options(heads=[1])
    text = _map_sentence(result, 0)
    assert "mean(map) equals head 0's own score" in text and "not the score above" in text
    # ... and that is true (prefix-free backbone), while the score is head 1's.
    assert float(result.head_maps[0].mean()) == pytest.approx(float(result.head_scores[0]), abs=1e-5)
    assert f"{result.head_scores[0]:+.4f}" in text and result.score != pytest.approx(float(result.head_scores[0]))
    assert _map_sentence(result, MEAN_VIEW) == "mean(map) equals the score exactly"
    assert float(result.patch_map.mean()) == pytest.approx(result.score, abs=1e-5)


def test_example_is_ranked_among_the_others_and_card_cells_keep_pipes():
    from app.models import backbone_card
    from app.tabs.inspect import _example_name, _rank_text

    assert _example_name(str(PHOTO)) == PHOTO.name
    assert _example_name(str(ROOT / "README.md")) is None
    assert "7 other bundled example faces" in _rank_text(1.0, [0.0] * 7, itself=True)
    card = backbone_card("attnfiqa-vit-t")
    row = next(line for line in card.splitlines() if line.startswith("| trained weights |"))
    assert "prepare\\|run\\|export" in row and row.endswith(" |")
    assert "--weights FILE" in row  # the cell goes on past the pipes


# --- in the browser -------------------------------------------------------------------------------------------------

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 120_000


@pytest.fixture()
def page(server):
    if not Path(CHROMIUM).exists():
        if os.environ.get("ATTN_FIQA_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(server.local_url, wait_until="load")  # not "networkidle": the Live tab keeps a heartbeat open
        page.locator("#backbone").wait_for()
        yield page
        browser.close()


def _score(page) -> str:
    return page.locator("#score").inner_text()


def _wait_score(page, text: str) -> None:
    page.wait_for_function(f"() => document.querySelector('#score')?.innerText.includes({text!r})")


def _choose_tiny(page) -> None:
    """The tiny test ViT, for speed (the default ViT-B works the same, slower)."""
    page.locator("#backbone input").click()
    page.get_by_role("option", name=TINY).click()
    page.wait_for_function(f"() => document.querySelector('#backbone-status').innerText.includes({TINY!r})")


@pytest.mark.browser
@pytest.mark.timeout(400)
def test_offline_first_click_then_the_one_click_demo(page):
    """Item 1: the picker shows the downloadable default, a click without weights says so once in the score box (no
    error badges, no toast), and the banner's button runs the mechanics demo; item 8: ranked among the others."""
    assert ONLINE_DEFAULT in page.locator("#backbone input").input_value()
    page.locator("#inspect-image input[type=file]").set_input_files(str(PHOTO))
    _wait_score(page, "No trained weights")
    page.wait_for_timeout(500)
    assert page.locator(".toast-body").count() == 0
    assert page.get_by_text("Error", exact=True).count() == 0
    assert "Add a photo" not in _score(page)
    assert not page.locator("#random-weights input[type=checkbox]").is_checked()

    page.locator("#try-random").click()
    _wait_score(page, "Score ")
    assert page.locator("#random-weights input[type=checkbox]").is_checked()
    assert "Random weights" in _score(page)
    # The library's score in a fresh interpreter: in a full test run this process's own computation disagreed with
    # both the app and a fresh process (-0.0010 and +0.0332 against -0.0071), after earlier test modules.
    expected = float(subprocess.run(
        [sys.executable, "-c", "from attn_core import FaceQualityModel; import sys; "
         f"print(FaceQualityModel({ONLINE_DEFAULT!r}, random_init=True).score_image(sys.argv[1])[0].score)",
         str(PHOTO)], capture_output=True, text=True, check=True, timeout=300).stdout.split()[-1])
    assert f"Score {expected:+.4f}" in _score(page)
    count = len(list(EXAMPLES.glob("*.jpg"))) + len(list(EXAMPLES.glob("*.png"))) - 1
    assert f"Within the {count} other bundled example faces" in _score(page)
    assert f"of {count}**" not in _score(page) and f"of {count}" in _score(page)


@pytest.mark.browser
@pytest.mark.timeout(400)
def test_one_random_switch_blank_bounds_and_every_block_change_reruns(page):
    """Items 4, 5, 6: one random-weights switch, blank fixed-range bounds, typing/arrow keys on the block."""
    assert page.locator("#compare-random").count() == 0 and page.locator("#eval-random").count() == 0
    assert page.get_by_role("checkbox", name="random weights").count() == 1  # the top bar's, nowhere else
    page.locator("#random-weights input[type=checkbox]").check()
    _choose_tiny(page)
    page.locator("#inspect-image input[type=file]").set_input_files(str(PHOTO))
    _wait_score(page, "Score ")
    last = get_spec(TINY).depth - 1
    assert f"block {last}," in _score(page)

    # Item 6: typing a block and Enter reruns at once; so does an arrow key on the slider.
    number = page.locator("#block input[type=number]")
    number.fill("0")
    number.press("Enter")
    _wait_score(page, "block 0,")
    page.locator("#block input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    _wait_score(page, "block 1,")

    # Item 5: fixed range with blank bounds: blank boxes, the example set's range, no error.
    page.get_by_text("Display", exact=True).click()
    assert page.locator("#vmin input, #vmin textarea").first.input_value() == ""
    assert page.locator("#vmax input, #vmax textarea").first.input_value() == ""
    page.get_by_role("radio", name="fixed range").check()
    page.wait_for_timeout(1500)
    _wait_score(page, "Score ")
    assert "vmin < vmax" not in _score(page) and page.locator(".toast-body").count() == 0
    assert page.locator("#raw-map img").is_visible()
    assert "Raw patch map" in page.locator("#raw-map").inner_text()

    # Item 4: Compare follows the top switch: every ticked backbone runs on random weights, no "Or tick" row.
    page.get_by_role("tab", name="Compare backbones").click()
    page.locator("#compare-image input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_timeout(1000)
    page.locator("#compare").click()
    page.wait_for_selector("#compare-gallery img")
    page.wait_for_timeout(1000)
    assert "random" in page.locator("#compare-gallery").inner_text()
    table = page.locator("#compare-table").inner_text()
    assert TINY in table and "Or tick" not in table and "random_init" not in table


def test_cli_reports_made_with_random_weights_say_so_loudly(tmp_path):
    """Item 14: sweep.md, the sweep plots' titles and eval.md say "random weights" first, as the app does."""
    import shutil

    from attn_core.cli.main import main
    from attn_core.eval import demo_identity_folder
    from attn_core.eval.reports import plot_score_vs_strength

    tiny = ["--backbone", TINY, "--random-init", "--precision", "fp32", "--quiet"]
    faces = tmp_path / "faces"
    faces.mkdir()
    shutil.copyfile(EXAMPLES / "person_b_1.jpg", faces / "b.jpg")
    assert main(["sweep", str(faces), *tiny, "--out", str(tmp_path / "sweep"), "--strengths", "0,1"]) == 0
    sweep_md = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "**RANDOM WEIGHTS:" in sweep_md.split("## Warnings", 1)[1].splitlines()[2]  # the first warning
    assert main(["eval", str(demo_identity_folder(tmp_path / "demo")), *tiny, "--out", str(tmp_path / "eval"),
                 "--cache-dir", str(tmp_path / "cache"), "--fmr", "0.1"]) == 0
    eval_md = (tmp_path / "eval" / "eval.md").read_text()
    assert "**RANDOM WEIGHTS:" in eval_md.split("## Warnings", 1)[1].splitlines()[2]
    # The plot's note is drawn (a red title line): the picture differs from the same plot without it.
    rows = [{"degradation": "blur", "file_index": 0, "score:m": s, "clean": False} for s in (1.0, 0.5)]
    plain = plot_score_vs_strength(rows, "m", ["blur"], [0.0, 1.0], tmp_path / "plain.png")
    noted = plot_score_vs_strength(rows, "m", ["blur"], [0.0, 1.0], tmp_path / "noted.png", "RANDOM WEIGHTS: x")
    assert plain.read_bytes() != noted.read_bytes()


def test_cli_backbones_and_the_app_list_the_same_entries(capsys):
    """Item 15: `attn-fiqa backbones --all` is the app's picker, entry for entry; without --all the CLI names the
    entries it hides and why."""
    from app.models import backbone_specs
    from attn_core.cli.main import main

    assert main(["backbones", "--all"]) == 0
    listed_all = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line and line[0] != " "
                  and not line.startswith(("Any ", "Hidden"))]
    assert listed_all == [spec.name for spec in backbone_specs()]
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    shown = [line.split()[0] for line in out.split("\n\n")[0].splitlines()[2:]]
    hidden = sorted(set(listed_all) - set(shown))
    assert hidden == ["test-face-vit-p8", "test-face-vit-p9", "timm:test_vit.r160_in1k"]
    assert f"Hidden: 3 tiny test architectures with random weights only ({', '.join(hidden)})" in out
    assert "`attn-fiqa backbones --all` lists them, as the app's picker does" in out


def test_no_face_error_names_the_apps_checkbox():
    """Item 11: the app words the library's no-face hint as its own checkbox, never as an API argument."""
    from app.photos import CENTRE_CROP_LABEL, app_wording
    from attn_core.faces import NoFaceError, extract_faces

    with pytest.raises(NoFaceError) as caught:
        extract_faces(np.full((200, 300, 3), 90, np.uint8))
    assert "on_no_face='center_crop'" in str(caught.value)  # the library speaks to programmers
    worded = app_wording(str(caught.value))
    assert f"tick '{CENTRE_CROP_LABEL}' (Inspect tab, under Attention)" in worded and "on_no_face" not in worded
