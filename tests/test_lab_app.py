"""The Attention lab tab over real HTTP (gradio_client) and in headless Chromium: its views agree with attn_core's
lab on the same photo, the model runs once per photo, and a click on a patch changes the row view and names it."""

from __future__ import annotations

import os
import re
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from attn_core.lab import capture_lab  # noqa: E402
from attn_core.scoring import FaceQualityModel  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*")]

PHOTO = str(Path(__file__).resolve().parent.parent / "assets" / "examples" / "person_a_1.jpg")
TINY = "test-face-vit-p8"


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.local_url, verbose=False)


@pytest.fixture(scope="module")
def reference():
    return capture_lab(FaceQualityModel(TINY, random_init=True, precision="fp32"), PHOTO)


@pytest.fixture
def captures(monkeypatch):
    """Counts the lab's forward passes (a spy on the one capture call the tab makes)."""
    from app.tabs import lab as lab_tab

    calls = []
    real = lab_tab.attention_lab.capture_lab
    monkeypatch.setattr(lab_tab.attention_lab, "capture_lab", lambda *a, **k: calls.append(1) or real(*a, **k))
    lab_tab._lab_cache.clear()
    return calls


def test_views_are_named_endpoints_and_agree_with_the_library(client, reference, captures):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/lab_row", "/lab_matrix", "/lab_qk", "/lab_model_view", "/lab_lesson", "/lab_curves", "/lab_pick"} <= names
    photo = handle_file(PHOTO)
    *pictures, caption = client.predict(photo, TINY, True, 2, 1, "3,4", "", api_name="/lab_row")
    assert "patch (3, 4)" in caption and "head 1" in caption
    row = reference.row(2, 1, reference.token_of_patch(3, 4))
    assert f"max logit {row.max():+.4f}" in caption
    assert all(Path(p).stat().st_size > 1000 for p in pictures)
    _, decomposition = client.predict(photo, TINY, True, 2, -1, "3,4", "", api_name="/lab_matrix")
    assert f"**{reference.score:+.6f}**" in decomposition
    for head, value in enumerate(reference.head_scores(2)):
        assert f"{head}: {value:+.4f}" in decomposition
    _, qk_text = client.predict(photo, TINY, True, 1, 2, "3,4", "5,6", api_name="/lab_qk")
    query, key = reference.token_of_patch(3, 4), reference.token_of_patch(5, 6)
    assert f"sum to {reference.qk_terms(1, 2, query, key).sum():+.6f}" in qk_text
    assert f"= {reference.matrix(1, 2)[query, key]:+.6f}" in qk_text
    lesson, *_ = client.predict(photo, TINY, True, 2, -1, api_name="/lab_lesson")
    assert f"1/N = 1/{reference.num_tokens}" in lesson and f"{reference.score:+.4f}" in lesson
    client.predict(photo, TINY, True, 0, 0, "1,1", "row", api_name="/lab_model_view")
    client.predict(photo, TINY, True, 0, 0, api_name="/lab_curves")
    assert len(captures) == 1  # six views, three blocks, several heads and queries: one forward pass


def test_bad_patch_is_one_sentence(client):
    # Said once, in the lab's caption (no toast), with the row views cleared.
    for typed, sentence in (("14,0", "outside the 14x14 patch grid"), ("three", "ROW,COL")):
        *pictures, caption = client.predict(handle_file(PHOTO), TINY, True, 2, -1, typed, "", api_name="/lab_row")
        assert sentence in caption and "\n" not in caption and all(p is None for p in pictures)


@pytest.mark.browser
def test_click_a_patch_in_chromium(server, captures):
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox",
                                                                             "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(server.local_url, wait_until="load")  # not "networkidle": the Live tab keeps a heartbeat open
            page.locator("#backbone").wait_for()
            from app import models
            from attn_core.zoo.registry import get_spec, weights_available

            startup = models.startup_state()
            grid = get_spec(startup.default_backbone).grid
            if not weights_available(get_spec(startup.default_backbone)):
                page.locator("#random-weights input[type=checkbox]").check()
                page.wait_for_function(
                    "() => document.querySelector('#backbone-status').innerText.includes('Random weights')")
            page.locator("#inspect-image input[type=file]").set_input_files(PHOTO)
            page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score ')")
            page.get_by_role("tab", name="Attention lab").click()
            centre = f"patch ({grid[0] // 2}, {grid[1] // 2})"
            try:
                page.wait_for_function(f"() => document.querySelector('#lab-caption')?.innerText.includes({centre!r})")
            except Exception:
                page.screenshot(path=os.environ.get("LAB_SCREENSHOT", os.devnull))
                raise
            before = page.locator("#lab-row img").get_attribute("src")
            face = page.locator("#lab-face img")
            face.wait_for(state="visible")
            box = face.bounding_box()
            # Patch (2, cols - 3): its centre, in the picture's own pixels scaled to the shown box (the grid covers
            # grid * patch of the input's pixels).
            spec = get_spec(startup.default_backbone)
            covered = spec.patch_size / spec.input_size
            col = grid[1] - 3
            # The square picture is drawn "object-fit: contain" in its box: centred, its side the box's shorter side.
            side = min(box["width"], box["height"])
            left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
            page.mouse.click(left + side * covered * (col + 0.5), top + side * covered * 2.5)
            page.wait_for_function(f"() => document.querySelector('#lab-caption').innerText.includes('patch (2, {col})')")
            page.wait_for_function(f"() => document.querySelector('#lab-row img').src !== {before!r}")
            assert page.locator("#lab-query input, #lab-query textarea").first.input_value() == f"2,{col}"
            assert re.search(rf"token \d+ of {spec.num_tokens}", page.locator("#lab-caption").inner_text())
            assert len(captures) == 1  # the click re-read the cached q/k
        finally:
            browser.close()


def test_the_lab_does_not_run_when_the_inspect_photo_changes():
    """The photo is chosen in Inspect, so the lab is closed then; its views run when its tab opens. On the photo's
    change they ran six views per upload for nobody, once for each change event Gradio's page fires for one upload
    (measured: 18 Inspect runs and a greyed, stuck score in 25 s after the first run's "try random weights")."""
    from app import ui

    demo = ui.build_demo()
    (photo,) = [block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "inspect-image"]
    lab_views = [fn for fn in demo.fns.values() if (fn.api_name or "").startswith("lab_")]
    assert len(lab_views) > 6
    assert not [fn.api_name for fn in lab_views if (photo._id, "change") in [tuple(t) for t in fn.targets]]
    tab_select = [fn for fn in lab_views if any(t[1] == "select" for t in fn.targets)]
    assert {fn.api_name for fn in tab_select} >= {"lab_row", "lab_matrix", "lab_qk", "lab_model_view", "lab_lesson",
                                                  "lab_curves"}


def test_the_lab_runs_on_the_top_bar_only_while_it_is_open():
    """The random-weights switch and the backbone picker are in the top bar, seen from every tab: with the lab open
    they rerun its views, with another tab open nothing runs (the lab's select runs them all when it opens). The
    page's ``gr.Tabs`` select event keeps a per-page state saying whether the lab is the selected tab."""
    import gradio as gr

    from app import ui
    from app.tabs import lab as lab_tab

    demo = ui.build_demo()
    by_id = {block._id: block for block in demo.blocks.values()}
    checkbox = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "random-weights")
    tabs = next(block for block in demo.blocks.values() if isinstance(block, gr.Tabs))
    (opened,) = [fn for fn in demo.fns.values() if (tabs._id, "select") in [tuple(t) for t in fn.targets]]
    (state,) = opened.outputs
    assert isinstance(state, gr.State) and state.value is False
    names = {"lab_row", "lab_matrix", "lab_qk", "lab_model_view", "lab_lesson", "lab_curves"}
    on_switch = [fn for fn in demo.fns.values() if (checkbox._id, "input") in [tuple(t) for t in fn.targets]
                 and (fn.api_name or "").startswith("lab_")]
    after_backbone = [fn for fn in demo.fns.values() if (fn.api_name or "").endswith("_after_backbone_change")
                      and fn.api_name.startswith("lab_")]
    for group in (on_switch, after_backbone):
        assert {fn.api_name.rsplit("_after_", 1)[0] for fn in group} == names
        assert all(fn.inputs[0] is state for fn in group), "every top-bar lab view first reads whether the lab is open"
    assert all(by_id[fn.inputs[0]._id] is state for fn in on_switch)

    assert lab_tab.lab_opened(gr.SelectData(None, {"value": "Attention lab", "index": 1})) is True
    assert lab_tab.lab_opened(gr.SelectData(None, {"value": "Live", "index": 2})) is False
    calls = []
    row = lab_tab.when_open(lambda *args: calls.append(args) or ("a", "b"), 2)
    assert row(False, PHOTO, TINY, True) == (gr.skip(), gr.skip()) and calls == []  # closed: nothing runs
    assert row(True, PHOTO, TINY, True) == ("a", "b") and calls == [(PHOTO, TINY, True)]
    assert lab_tab.when_open(lambda *args: "one", 1)(False) == gr.skip()
