"""Screenshots of the first-use download as a user sees it, against a local Hub server (no internet needed).

    python scripts/screenshot_first_use.py [--out screenshots/]

Serves a small checkpoint laid out like the CVLFace ViT-B repo on 127.0.0.1 (``tests/hub_server.py``), points
HF_ENDPOINT at it with an empty HF_HOME, launches the app and saves: ``first_use_start.png`` (the status line before
the download), ``first_use_scored.png`` (after the first inspect downloaded and scored), and ``offline_banner.png``
(the same fresh install with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = tempfile.mkdtemp(prefix="attn_fiqa_first_use_")
# Before anything imports huggingface_hub: it reads these once.
os.environ.update(HF_HOME=os.path.join(HOME, "hf"), ATTN_FIQA_HOME=os.path.join(HOME, "home"),
                  GRADIO_ANALYTICS_ENABLED="False")
os.environ.pop("HF_HUB_OFFLINE", None)
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "scripts")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    args = parser.parse_args()
    from hub_server import HubServer
    from test_hub import CVLFACE, _cvlface_model, cvlface_repo

    with HubServer({CVLFACE: cvlface_repo(_cvlface_model(dim=64))}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        import huggingface_hub.constants as constants

        constants.ENDPOINT = hub.url  # imported by the lines above already
        constants.HUGGINGFACE_CO_URL_TEMPLATE = hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        from dataclasses import replace

        from playwright.sync_api import sync_playwright

        from attn_core.zoo import registry

        # The served stand-in is a small ViT of the same family (the real one is 460 MB): describe it in the registry
        # of this process only, so the app's block and head controls fit the downloaded file as they would the real one.
        registry._REGISTRY[registry.ONLINE_DEFAULT] = replace(
            registry.get_spec(registry.ONLINE_DEFAULT), embed_dim=64, depth=2, num_heads=4, out_dim=16)

        from screenshots import (
            CHROMIUM,
            CHROMIUM_ARGS,
            EXAMPLES,
            TIMEOUT_MS,
            free_port,
            upload,
            wait_idle,
        )

        from app import ui

        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            demo = ui.launch(host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(demo.local_url, wait_until="load")  # not "networkidle": the heartbeat stays open
                page.wait_for_selector("#backbone-status", timeout=TIMEOUT_MS)
                page.wait_for_function("() => [...document.images].every(image => image.complete)", timeout=TIMEOUT_MS)
                page.screenshot(path=str(args.out / "first_use_start.png"))
                upload(page, "inspect-image", EXAMPLES / "person_b_1.jpg")
                try:
                    page.wait_for_function("() => document.querySelector('#score')?.innerText.includes('Score')",
                                           timeout=TIMEOUT_MS)
                except Exception:
                    page.screenshot(path=str(args.out / "first_use_failed.png"), full_page=True)
                    raise
                wait_idle(page)
                page.screenshot(path=str(args.out / "first_use_scored.png"), full_page=True)
            finally:
                demo.close()
            print(f"requests to the Hub: {[(r.method, r.path.rsplit('/', 1)[-1]) for r in hub.state.requests]}")
            os.environ["HF_HUB_OFFLINE"] = "1"
            import shutil

            shutil.rmtree(os.path.join(HOME, "hf"), ignore_errors=True)  # a fresh install again, now offline
            demo = ui.launch(host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(demo.local_url, wait_until="load")
                page.wait_for_selector("#banner", timeout=TIMEOUT_MS)
                page.wait_for_function("() => [...document.images].every(image => image.complete)", timeout=TIMEOUT_MS)
                page.screenshot(path=str(args.out / "offline_banner.png"))
            finally:
                demo.close()
            browser.close()
    import shutil

    shutil.rmtree(HOME, ignore_errors=True)
    for name in ("first_use_start", "first_use_scored", "offline_banner"):
        print(f"saved {args.out / (name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
