"""A fake-camera video for the Live tab (Chromium's --use-file-for-fake-video-capture reads raw YUV4MPEG2):
a bundled example face moving over a grey background, clean for a few seconds, then more and more blurred, then
covered by an occluder over the eyes. Chromium loops the file.

    python benchmarks/live_video.py OUT.y4m [--seconds-each 4] [--fps 10]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FACE = ROOT / "assets" / "examples" / "person_a_1.jpg"
WIDTH, HEIGHT = 640, 480


def _face_sprite(path: Path, height: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """The example photo scaled to ``height``, and its eye landmarks there (for the occluder)."""
    from attn_core.faces import extract_faces, load_image

    photo = load_image(path)
    scale = height / photo.shape[0]
    sprite = cv2.resize(photo, (max(1, round(photo.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
    eyes = extract_faces(photo)[0].landmarks[:2] * scale
    return sprite, eyes


def frames(seconds_each: float = 4.0, fps: int = 10, face: Path = FACE):
    """Yield (H, W, 3) uint8 RGB frames: clean, rising blur, occluder; the face drifts in a slow ellipse."""
    sprite, eyes = _face_sprite(face)
    count = round(3 * seconds_each * fps)
    for index in range(count):
        t = index / fps
        phase = t / seconds_each  # 0-1 clean, 1-2 blur, 2-3 occluder
        canvas = np.full((HEIGHT, WIDTH, 3), 118, np.uint8)
        left = int((WIDTH - sprite.shape[1]) / 2 + 60 * math.sin(2 * math.pi * t / 5))
        top = int((HEIGHT - sprite.shape[0]) / 2 + 30 * math.cos(2 * math.pi * t / 7))
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + sprite.shape[1], WIDTH), min(top + sprite.shape[0], HEIGHT)
        canvas[y0:y1, x0:x1] = sprite[y0 - top:y1 - top, x0 - left:x1 - left]
        if 1 <= phase < 2:
            sigma = 0.3 + 6.0 * (phase - 1)
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
        elif phase >= 2:
            (ax, ay), (bx, by) = eyes + (left, top)
            reach = (phase - 2) * 0.8 + 0.4  # the bar grows across the eyes
            middle_x, middle_y = (ax + bx) / 2, (ay + by) / 2
            half = abs(bx - ax) * reach
            cv2.rectangle(canvas, (int(middle_x - half), int(middle_y - 18)), (int(middle_x + half), int(middle_y + 18)),
                          (20, 20, 20), -1)
        yield canvas


def write_video(path: Path, seconds_each: float = 4.0, fps: int = 10, face: Path = FACE) -> Path:
    """The clip as YUV4MPEG2 4:2:0 (what Chromium's fake camera reads); returns ``path``."""
    path = Path(path)
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames(seconds_each, fps, face):
            yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)  # Y plane, then U and V at quarter size
            handle.write(b"FRAME\n" + yuv.tobytes())
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds-each", type=float, default=4.0, help="seconds clean, blurring, occluded")
    parser.add_argument("--fps", type=int, default=10)
    args = parser.parse_args(argv)
    print(write_video(args.out, args.seconds_each, args.fps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
