"""Launch the app and save a screenshot of each tab (headless Chromium via Playwright).

    python scripts/screenshots.py                      # -> screenshots/{inspect,degrade,compare,batch,evaluate,about}.png
    python scripts/screenshots.py --out docs/shots --docs docs/inspect.png

Without face-trained weights the app's default backbone cannot run: the script then shows the offline first run
(first_run_start/before/after.png: a photo refused in one sentence, then the banner's "Try the mechanics with random
weights" button) and keeps the one random-weights switch ticked (every score then says "random weights").
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = ROOT / "assets" / "examples"
TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_idle(page) -> None:
    """Until no Gradio progress indicator is left on the page."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('.progress-text, .eta-bar, .meta-text-center')",
                           timeout=TIMEOUT_MS)
    page.wait_for_timeout(400)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def capture(out: Path, docs: Path | None, width: int) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from app import models, ui
    from attn_core.zoo.registry import get_spec, weights_available

    startup = models.startup_state()
    needs_random = not weights_available(get_spec(startup.default_backbone))
    demo = ui.launch(host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1)
            page.goto(demo.local_url, wait_until="networkidle")
            page.wait_for_selector("#inspect-image", timeout=TIMEOUT_MS)

            def shot(name: str) -> None:
                path = out / f"{name}.png"
                page.screenshot(path=str(path), full_page=True)
                saved.append(path)
                print(f"saved {path}")

            if needs_random:
                # The offline first run, as a newcomer sees it: a photo without weights (one sentence in the score
                # box), then the banner's one-click button (random weights, the photo inspected).
                shot("first_run_start")
                upload(page, "inspect-image", EXAMPLES / "person_a_1.jpg")
                page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('No trained')",
                                       timeout=TIMEOUT_MS)
                wait_idle(page)
                shot("first_run_before")
                page.locator("#try-random").click()
                page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score')",
                                       timeout=TIMEOUT_MS)
                wait_idle(page)
                shot("first_run_after")

            upload(page, "inspect-image", EXAMPLES / "person_b_1.jpg")
            page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score')",
                                   timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("inspect")

            open_tab(page, "Degradation explorer")
            upload(page, "degrade-image", EXAMPLES / "person_b_1.jpg")
            page.wait_for_function("() => document.querySelector('#degrade-summary')?.innerText.includes('SFace')",
                                   timeout=TIMEOUT_MS)
            page.locator("#sweep").click()
            page.wait_for_selector("#sweep-plot img", timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("degrade")

            open_tab(page, "Compare backbones")
            upload(page, "compare-image", EXAMPLES / "person_b_1.jpg")
            page.locator("#compare").click()
            page.wait_for_selector("#compare-gallery img", timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("compare")

            open_tab(page, "Batch and rank")
            photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
            page.locator("#batch-files input[type=file]").set_input_files([str(p) for p in photos])
            page.wait_for_timeout(1500)
            page.locator("#batch").click()
            page.wait_for_selector("#batch-highest img", timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("batch")

            open_tab(page, "Evaluate")  # the bundled demo set, the default backbone, sface
            page.locator("#evaluate").click()
            page.wait_for_selector("#eval-plots img", timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("evaluate")

            open_tab(page, "About")
            wait_idle(page)
            shot("about")
            browser.close()
    finally:
        demo.close()
    if docs is not None:
        save_small(out / "inspect.png", docs)
        saved.append(docs)
    return saved


def save_small(source: Path, target: Path, limit: int = 400_000) -> None:
    """Copy a screenshot as a PNG under ``limit`` bytes (palette-quantised, downscaled if it must be)."""
    from PIL import Image

    image = Image.open(source).convert("RGB")
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit or image.width < 600:
            break
        image = image.resize((int(image.width * 0.85), int(image.height * 0.85)), Image.Resampling.LANCZOS)
    target.write_bytes(buffer.getvalue())
    print(f"saved {target} ({buffer.tell() // 1024} KB, {image.width}x{image.height})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots", help="folder for the PNGs")
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write a small copy of the Inspect screenshot here (e.g. docs/inspect.png)")
    parser.add_argument("--width", type=int, default=1400, help="browser width in pixels")
    args = parser.parse_args(argv)
    capture(args.out, args.docs, args.width)
    return 0


if __name__ == "__main__":
    sys.exit(main())
