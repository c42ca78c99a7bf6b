"""The app in headless Chromium (Playwright): upload, score, overlay, switch a head, degradation sweep."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword).*"),
]

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHOTO = Path(__file__).resolve().parent.parent / "assets" / "examples" / "person_a_1.jpg"
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def app_url(server) -> str:
    return server.local_url


@pytest.fixture()
def page(app_url):
    if not Path(CHROMIUM).exists():
        if os.environ.get("ATTN_FIQA_REQUIRE_BROWSER"):  # CI: the browser tests must run, or fail loudly
            pytest.fail(f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver, or set CHROMIUM)")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        page.goto(app_url, wait_until="load")  # not "networkidle": the Live tab's stream keeps a heartbeat open
        page.locator("#backbone").wait_for()
        yield page
        browser.close()


def _score_text(page) -> str:
    return page.locator("#score").inner_text()


def test_upload_score_switch_head_and_sweep(page, forward_passes):
    from app import models
    from attn_core.scoring.model import FaceQualityModel
    from attn_core.zoo.registry import get_spec, weights_available

    startup = models.startup_state()
    random_weights = not weights_available(get_spec(startup.default_backbone))
    if random_weights:  # no face-trained weights here: opt in explicitly, as a user must
        page.locator("#random-weights input[type=checkbox]").check()
        page.wait_for_function("() => document.querySelector('#backbone-status').innerText.includes('Random weights')")
    model = FaceQualityModel(startup.default_backbone, random_init=random_weights)
    (expected,) = model.score_image(str(PHOTO), all_faces=True)

    page.locator("#inspect-image input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score ')")
    assert f"Score {expected.score:+.4f}" in _score_text(page)
    assert "higher" in _score_text(page).lower()
    overlay = page.locator("#crop-overlay img")
    overlay.wait_for(state="visible")
    assert overlay.evaluate("img => img.complete && img.naturalWidth") == 112
    assert page.locator("#photo-overlay img").is_visible()
    assert "face(s) found" in page.locator("#faces-found").inner_text()

    # Selecting head 1 alone re-summarises the cached attention: new score, no new forward pass.
    passes = forward_passes.count
    head_one = expected.with_options(heads=(1,)).score
    page.locator("#heads").get_by_label("head 1", exact=True).check()
    page.wait_for_function(f"() => document.querySelector('#score').innerText.includes('Score {head_one:+.4f}')")
    assert "heads 1" in _score_text(page)
    assert forward_passes.count == passes

    page.get_by_role("tab", name="Degradation explorer").click()
    page.locator("#degrade-image input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_function("() => document.querySelector('#degrade-summary')?.innerText.includes('SFace')")
    page.locator("#sweep").click()
    plot = page.locator("#sweep-plot img")
    plot.wait_for(state="visible")
    assert plot.evaluate("img => img.complete && img.naturalWidth") > 600


def _write_y4m(path: Path, image_path: Path, frames: int = 20) -> None:
    """A raw YUV 4:2:0 clip of one photo, for Chromium's fake camera (--use-file-for-fake-video-capture)."""
    import numpy as np
    from PIL import Image

    ycbcr = np.asarray(Image.open(image_path).convert("RGB").resize((480, 640)).convert("YCbCr"))
    height, width = ycbcr.shape[:2]
    luma = ycbcr[..., 0]
    chroma = [ycbcr[..., c].reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3)).round().astype(np.uint8)
              for c in (1, 2)]
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            handle.write(b"FRAME\n" + luma.tobytes() + chroma[0].tobytes() + chroma[1].tobytes())


def test_webcam_capture_is_scored_and_overlaid(app_url, tmp_path):
    """The webcam path in headless Chromium with a fake camera playing an example face (localhost: allowed)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("ATTN_FIQA_REQUIRE_BROWSER"):
            pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    clip = tmp_path / "face.y4m"
    _write_y4m(clip, PHOTO)
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"]
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + camera)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(app_url, wait_until="load")
        page.locator("#random-weights input[type=checkbox]").check()
        page.wait_for_function("() => document.querySelector('#backbone-status').innerText.includes('Random weights')")
        page.locator("#inspect-image button[aria-label='Capture from camera']").click()
        page.get_by_text("Click to Access Webcam").click()
        page.locator("#inspect-image video").wait_for(state="visible")
        page.wait_for_function("() => document.querySelector('#inspect-image video').readyState >= 2")
        page.locator("#inspect-image button[aria-label='capture photo']").click()
        page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score ')")
        assert "1 face(s) found" in page.locator("#faces-found").inner_text()
        overlay = page.locator("#crop-overlay img")
        overlay.wait_for(state="visible")
        assert overlay.evaluate("img => img.complete && img.naturalWidth") == 112
        assert "Random weights" in _score_text(page)
        browser.close()
