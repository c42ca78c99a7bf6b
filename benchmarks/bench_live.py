"""The Live tab end to end: headless Chromium streams a fake camera to the app, which scores every frame it can.

    python benchmarks/bench_live.py [--backbone cvlface-vit-s-adaface] [--precision auto] [--seconds 20] [--streams 1 2]
                                    [--memory-streams 3 --memory-seconds 30]

The app runs in its own process (``python -m app``, random weights ticked in the page, as a user would); Chromium
plays a 640x480 video made from a bundled example face (benchmarks/live_video.py: clean, then rising blur, then an
occluder over the eyes; the face moves) through ``--use-file-for-fake-video-capture``. A warm-up stream loads the
model and scores the example faces (the score context) first. Then, for 1 and for 2 simultaneous streams (two
browser contexts = two sessions), a MutationObserver records every update of the page's ``live-stats`` line
("frames scored: N · F fps · L ms per frame"):
  - fps: frames scored per second as the page saw them (N's rise over the window, per stream);
  - server ms per frame: L of each update, the server's time for that frame from its arrival (decode, any wait for
    a free lane, detect, align, score, draw), p50 / p95;
  - page interval: time between two updates in the page, p50 / p95 (what a user sees: one new frame every ...);
  - server CPU per frame: the app process's user+system CPU time over the window / frames scored (all streams);
  - Chromium cores: CPU seconds of all Chromium processes per second of the window (the two cores are shared).
``--stages``: instead, the server's work on one frame in this process, stage by stage (CPU time of this process and
wall time, medians over the clip's frames), with torch on 1 thread and on its default thread count.
Memory: the app's RSS after the warm-up stream (its tab closed), then after ``--memory-streams`` streams of
``--memory-seconds`` each, one after another, each tab closed: it must come back within 10 %.
The machine is shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, load_average, percentile
from live_video import write_video

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
RECORD_JS = """() => {
  window.liveUpdates = [];
  const read = () => { const stats = document.querySelector('#live-stats');
    if (stats) window.liveUpdates.push([performance.now(), stats.textContent.trim()]); };
  new MutationObserver(read).observe(document.querySelector('#live-panel'), {subtree: true, childList: true,
                                                                             characterData: true});
}"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _browser_cpu_seconds() -> float:
    """User+system CPU of every Chromium process on this machine (the fake camera, the page, its rendering)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "chrom" in text.split("(", 1)[1].split(")", 1)[0].lower():
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _serve(port: int, precision: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--precision", precision],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"the app did not start: {server.stderr.read()[-2000:]}") from None
            time.sleep(1)
    server.kill()
    raise RuntimeError("the app did not answer within 180 s")


def _open(browser, url: str, backbone: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, permissions=["camera"])
    page = context.new_page()
    page.set_default_timeout(180_000)
    page.goto(url, wait_until="load")
    page.locator("#random-weights input[type=checkbox]").check()
    page.locator("#backbone input").fill(backbone)
    page.keyboard.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#backbone-status').innerText.includes('{backbone}')")
    page.get_by_role("tab", name="Live").click()
    page.locator("#live-camera").get_by_text("Click to Access Webcam").click()
    page.wait_for_function("() => document.querySelector('#live-camera video')?.readyState >= 2")
    page.evaluate(RECORD_JS)
    page.locator("#live-camera button[aria-label='capture photo']").click()
    return page


def _scored(text: str) -> int:
    return int(text.split("frames scored:")[1].split("·")[0])


def _stream_numbers(updates: list, since_ms: float) -> dict:
    window = [(t, text) for t, text in updates if t >= since_ms and "frames scored:" in text]
    if len(window) < 2:
        return {"fps": 0.0, "frames": 0, "server_ms": [], "intervals": []}
    frames = _scored(window[-1][1]) - _scored(window[0][1])
    seconds = (window[-1][0] - window[0][0]) / 1000
    changed = [(t, text) for (t, text), (_, previous) in zip(window[1:], window) if _scored(text) != _scored(previous)]
    return {"fps": frames / seconds if seconds > 0 else 0.0, "frames": frames,
            "server_ms": [float(text.split("·")[2].split("ms")[0]) for _, text in changed],
            "intervals": [later - earlier for (earlier, _), (later, _) in itertools.pairwise(changed)]}


def measure(browser, url: str, backbone: str, streams: int, seconds: float, pid: int) -> list[dict]:
    pages = [_open(browser, url, backbone) for _ in range(streams)]
    for page in pages:  # every stream is scoring before the window opens
        page.wait_for_function("() => window.liveUpdates.some(u => /frames scored: [1-9]/.test(u[1]))")
    time.sleep(2)
    starts = [page.evaluate("() => performance.now()") for page in pages]
    cpu_before, browser_before = _cpu_seconds(pid), _browser_cpu_seconds()
    time.sleep(seconds)
    cpu, browser_cpu = _cpu_seconds(pid) - cpu_before, _browser_cpu_seconds() - browser_before
    results = [_stream_numbers(page.evaluate("() => window.liveUpdates"), start) for page, start in zip(pages, starts)]
    frames = sum(r["frames"] for r in results)
    for result in results:
        result["cpu_ms_per_frame"] = 1000 * cpu / frames if frames else float("nan")
        result["browser_cores"] = browser_cpu / seconds
    for page in pages:
        page.context.close()
    return results


def _row(label: str, result: dict) -> str:
    server, intervals = result["server_ms"] or [float("nan")], result["intervals"] or [float("nan")]
    return (f"| {label} | {result['fps']:.2f} | {result['frames']} | {percentile(server, 0.5):.0f} | "
            f"{percentile(server, 0.95):.0f} | {percentile(intervals, 0.5):.0f} | {percentile(intervals, 0.95):.0f} | "
            f"{result['cpu_ms_per_frame']:.0f} | {result['browser_cores']:.2f} |")


def _timed(times: dict, name: str, function, *args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    value = function(*args, **kwargs)
    times.setdefault(name, []).append((1000 * (time.process_time() - cpu), 1000 * (time.perf_counter() - wall)))
    return value


def _drawn(face, result, spec):
    from attn_core.viz import draw_boxes, photo_overlay

    return draw_boxes(photo_overlay(face, result.patch_map, spec), [face.box])


def stages(backbone: str, precision: str, repeats: int = 2) -> None:
    """The Live handler's stages on the clip's frames, in this process: what one frame costs the server."""
    import base64

    import cv2
    import numpy as np
    import torch
    from live_video import frames

    from app import live, models
    from app.tabs import live as live_tab
    from attn_core.faces import extract_faces

    models.set_precision(precision)
    urls = []
    for rgb in list(frames(4.0, 5))[::4]:
        _, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        urls.append("data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode())
    model = models.load_model(backbone, True)
    default_threads = torch.get_num_threads()
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        times: dict[str, list[tuple[float, float]]] = {}
        timed = functools.partial(_timed, times)
        model.score_faces([np.zeros((112, 112, 3), np.uint8)])  # warm
        for url in urls * repeats:
            pixels = timed("decode (data URL -> RGB)", live.frame_pixels, url)
            timed("detect + align, full 640 px", extract_faces, pixels, all_faces=True)
            faces = timed(f"detect + align, {live.DETECT_SIDE} px (used)", extract_faces, pixels, all_faces=True,
                          detect_max_side=live.DETECT_SIDE)
            if faces[0].method != "detected":
                continue
            (result,) = timed("score (ViT forward + statistics)", model.score_aligned, faces[:1])
            view = timed("map on the frame + box", _drawn, faces[0], result, model.spec)
            timed("JPEG + data URL of the view", live_tab.view_url, view)
        print(f"\n{backbone} (random weights), precision {model.precision}, torch threads {threads}, "
              f"{len(times['decode (data URL -> RGB)'])} frames; load {load_average()}")
        print("| stage | CPU ms (median) | wall ms (median) |\n|---|---|---|")
        for name, values in times.items():
            print(f"| {name} | {np.median([c for c, _ in values]):.1f} | {np.median([w for _, w in values]):.1f} |")
    torch.set_num_threads(default_threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="cvlface-vit-s-adaface")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per stream count")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2], help="simultaneous streams to measure")
    parser.add_argument("--memory-streams", type=int, default=3)
    parser.add_argument("--memory-seconds", type=float, default=30.0)
    parser.add_argument("--stages", action="store_true", help="only the per-stage cost of one frame, in this process")
    args = parser.parse_args(argv)
    if args.stages:
        stages(args.backbone, args.precision)
        return 0
    from playwright.sync_api import sync_playwright

    print(f"load average (1/5/15 min) at start: {load_average()}")
    folder = Path(tempfile.mkdtemp(prefix="bench_live_"))
    clip = write_video(folder / "camera.y4m", seconds_each=4.0, fps=15)
    port = _free_port()
    server = _serve(port, args.precision)
    url = f"http://127.0.0.1:{port}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=CHROMIUM_ARGS + [f"--use-file-for-fake-video-capture={clip}"])
            measure(browser, url, args.backbone, 1, 5, server.pid)  # warm-up: model, example faces, detector
            time.sleep(5)
            rss_before = _rss_mib(server.pid)
            rows = []
            for streams in args.streams:
                results = measure(browser, url, args.backbone, streams, args.seconds, server.pid)
                rows += [_row(f"{streams} stream(s), stream {index + 1}", r) for index, r in enumerate(results)]
                print(f"  done {streams} stream(s) (load {load_average()})", flush=True)
            steps = []
            for _ in range(args.memory_streams):
                measure(browser, url, args.backbone, 1, args.memory_seconds, server.pid)
                time.sleep(5)
                steps.append(_rss_mib(server.pid))
            rss_after = steps[-1] if steps else rss_before
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"\nbackbone {args.backbone} (random weights), --precision {args.precision}, 640x480 fake camera, "
          f"{args.seconds:.0f} s per measurement")
    print("| streams | fps (page) | frames | server ms/frame p50 | p95 | page interval ms p50 | p95 | server CPU ms/frame "
          "| Chromium cores |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    change = 100 * (rss_after - rss_before) / rss_before
    print(f"\nserver RSS: {rss_before:.0f} MiB after the warm-up stream, {rss_after:.0f} MiB after "
          f"{args.memory_streams} streams of {args.memory_seconds:.0f} s ({change:+.1f} %; limit +10 %); after each: "
          + ", ".join(f"{rss:.0f}" for rss in steps) + " MiB")
    print(f"load average (1/5/15 min) at end: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
