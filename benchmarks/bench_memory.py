"""The app's memory under the hostile worst cases: what one remote user can make the server hold.

    python benchmarks/bench_memory.py [--model-cache-mb 2048]

Starts ``python -m app`` (a separate process) and sends, one after the other, over Gradio's HTTP API:
1. every listed backbone with random weights, largest last (the model cache is bounded by count and by
   ``ATTN_FIQA_MODEL_CACHE_MB``; a model outside the picker is refused);
2. a small PNG that really holds 7000x7000 pixels (49 megapixels, under the 50-megapixel cap) with centre-crop on;
3. a genuine 45-megapixel JPEG photo (8200x5500);
4. 40 different photos in turn (the photo cache is bounded by count and by bytes).
After each step it prints the server's resident memory (VmRSS) and its peak so far (VmHWM), and the step's time.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_load import EXAMPLES, ROOT, HttpUser, _free_port  # noqa: E402


def _memory_mb(pid: int) -> tuple[float, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, amount = line.split(":")
            values[key] = int(amount.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-cache-mb", type=int, default=None, help="ATTN_FIQA_MODEL_CACHE_MB for the server")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="attn_fiqa_bench_memory_"))
    port = _free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if args.model_cache_mb is not None:
        env["ATTN_FIQA_MODEL_CACHE_MB"] = str(args.model_cache_mb)
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        user = None
        began = time.monotonic()
        while user is None:
            try:
                user = HttpUser(url)
                user.inspect(EXAMPLES[0], "test-face-vit-p8")
            except Exception:
                user = None
                if time.monotonic() - began > 180:
                    raise SystemExit("the app did not start")
                time.sleep(0.5)

        def step(label: str, action) -> None:
            start = time.perf_counter()
            try:
                outcome = action()
            except Exception as error:  # a refusal is an outcome too
                outcome = f"refused: {str(error)[:100]}"
            rss, peak = _memory_mb(server.pid)
            print(f"{label:<58} {time.perf_counter() - start:6.1f} s  RSS {rss:6.0f} MB  peak {peak:6.0f} MB  {outcome}")

        step("started, tiny model warm", lambda: "")
        from app.models import backbone_specs

        def weight_count(spec) -> int:  # rough size order: width^2 x depth
            return spec.embed_dim ** 2 * spec.depth

        for spec in sorted(backbone_specs(), key=weight_count):
            step(f"inspect with {spec.name} (random weights)", lambda s=spec: f"{user.inspect(EXAMPLES[1], s.name)} pictures")
        step("a backbone the picker does not list (timm:vit_huge_patch14_224)",
             lambda: user.inspect(EXAMPLES[1], "timm:vit_huge_patch14_224"))

        big_png = work / "filled_7000.png"
        Image.new("RGB", (7000, 7000), (128, 120, 110)).save(big_png, optimize=False, compress_level=9)
        step(f"7000x7000 PNG of {big_png.stat().st_size // 1024} KB, centre-crop on",
             lambda: _centre_crop(user, big_png))
        photo = work / "photo_45mp.jpg"
        rng = np.random.default_rng(0)
        small = rng.integers(0, 255, (550, 820, 3), dtype=np.uint8)
        Image.fromarray(small).resize((8200, 5500), Image.BILINEAR).save(photo, quality=90)
        step(f"45-megapixel JPEG ({photo.stat().st_size // 2**20} MB), centre-crop on", lambda: _centre_crop(user, photo))
        variants = []
        for index in range(40):
            buffer = io.BytesIO()
            picture = Image.open(EXAMPLES[index % len(EXAMPLES)]).convert("RGB")
            picture.putpixel((0, 0), (index, index, index))  # 40 different files
            picture.save(buffer, "PNG")
            target = work / f"variant_{index}.png"
            target.write_bytes(buffer.getvalue())
            variants.append(target)
        step("40 different photos in turn (photo cache)", lambda: sum(user.inspect(v, "cvlface-vit-s-adaface")
                                                                       for v in variants))
        rss, peak = _memory_mb(server.pid)
        print(f"\nserver peak resident memory over the worst cases: {peak:.0f} MB (now {rss:.0f} MB)")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    print(f"server tracebacks: {stderr.count('Traceback')}")
    return 0


def _centre_crop(user: HttpUser, path: Path) -> str:
    """/inspect with 'if no face is found, score the centre square' ticked (the costliest path for a faceless image)."""
    return f"{user.inspect(path, 'cvlface-vit-s-adaface', centre_crop=True)} pictures"


if __name__ == "__main__":
    sys.exit(main())
