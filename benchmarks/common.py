"""Shared pieces of the benchmark scripts: machine header, matmul roofline, interleaved timing, tables.

The benchmark machine is shared (other engineers' jobs use the same 2 cores), so every script
  - runs the paths it compares in interleaved rounds (A B C, B C A, ...) and reports medians, so load that
    comes and goes hits all paths alike, and computes ratios per round before taking their median;
  - reports CPU time of this process beside wall time: CPU time is far less sensitive to other processes
    stealing the cores (it still includes OpenMP spin-waits and page faults);
  - prints the 1-minute load average before and after.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODELS = ("cvlface-vit-s-adaface", "insightface-vit-t", "attnfiqa-vit-distilled")


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def header(title: str, device: torch.device) -> str:
    lines = [
        f"## {title}",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPU(s); "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op thread(s); device {device}",
        f"- load average (1/5/15 min) at start: {load_average()}",
    ]
    if device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 10,
                dtype: torch.dtype = torch.float32) -> float:
    """Best achieved GFLOP/s over a few large torch.matmul sizes in ``dtype``: the practical roofline.

    Best of several sizes and repeats, because one short measurement on a shared CPU under-reads the peak (a
    roofline fraction above 100% means exactly that).
    """
    best_rate = 0.0
    with torch.inference_mode():
        for size in sizes:
            a = torch.randn(size, size, device=device, dtype=dtype)
            b = torch.randn(size, size, device=device, dtype=dtype)
            a @ b
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                a @ b
                synchronize(device)
                best_rate = max(best_rate, 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best_rate


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)  # seconds per call
    cpu: list[float] = field(default_factory=list)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


def interleaved(paths: dict[str, Callable[[], object]], rounds: int, device: torch.device,
                warmup: int = 1) -> dict[str, Timing]:
    """Time each path ``rounds`` times, rotating the order every round."""
    names = list(paths)
    for name in names:
        for _ in range(warmup):
            paths[name]()
    timings = {name: Timing() for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            paths[name]()
            synchronize(device)
            timings[name].wall.append(time.perf_counter() - wall)
            timings[name].cpu.append(time.process_time() - cpu)
    return timings


def ratio(numerator: Timing, denominator: Timing, kind: str = "wall") -> float:
    """Median over rounds of the per-round ratio (both paths ran back to back in that round)."""
    top, bottom = getattr(numerator, kind), getattr(denominator, kind)
    return statistics.median(t / b for t, b in zip(top, bottom))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def table(rows: list[dict[str, object]]) -> str:
    """A Markdown table, columns in the order of the first row's keys."""
    columns = list(rows[0])
    cells = [[str(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in cells]
    return "\n".join(lines)


def pick_device(name: str | None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
