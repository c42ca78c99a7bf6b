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
        page.goto(app_url, wait_until="networkidle")
        yield page
        browser.close()


def _score_text(page) -> str:
    return page.locator("#score").inner_text()


def test_upload_score_switch_head_and_sweep(page):
    from app import handlers
    from attn_core.api import FaceQualityModel
    from attn_core.registry import get_spec, weights_available

    startup = handlers.startup_state()
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
    passes = handlers.forward_passes["count"]
    head_one = expected.with_options(heads=(1,)).score
    page.locator("#heads").get_by_label("head 1", exact=True).check()
    page.wait_for_function(f"() => document.querySelector('#score').innerText.includes('Score {head_one:+.4f}')")
    assert "heads 1" in _score_text(page)
    assert handlers.forward_passes["count"] == passes

    page.get_by_role("tab", name="Degradation explorer").click()
    page.locator("#degrade-image input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_function("() => document.querySelector('#degrade-summary')?.innerText.includes('SFace')")
    page.locator("#sweep").click()
    plot = page.locator("#sweep-plot img")
    plot.wait_for(state="visible")
    assert plot.evaluate("img => img.complete && img.naturalWidth") > 600
