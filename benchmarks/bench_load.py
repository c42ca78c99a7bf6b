"""Concurrent users against a started app: errors, latency percentiles and the server's peak memory.

    python benchmarks/bench_load.py [--users 8] [--requests 25] [--burst 40] [--backbone cvlface-vit-s-adaface]

Starts ``python -m app`` on a free loopback port (a separate process, as a user would), then:
1. ``--users`` gradio_client users, each sending ``--requests`` /inspect requests in turn (example photos, random
   weights of ``--backbone``: the ViT-S shape); prints errors, p50 and p95 of the request latency;
2. a burst of ``--burst`` simultaneous requests: each must be answered, or told clearly that the queue is full;
   truncated responses and server tracebacks are counted.
The server's peak resident memory (VmHWM) is read from /proc. Targets (2-core CPU, idle): 0 errors, p95 <= 2.5 s.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "assets" / "examples").iterdir() if p.suffix in (".jpg", ".png"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _inspect(client, photo: Path, backbone: str):
    from gradio_client import handle_file

    return client.predict(handle_file(str(photo)), backbone, True, -1, [], "mean", "all", 0, -1, "jet", 0.4,
                          "per image", None, None, False, api_name="/inspect")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--backbone", default="cvlface-vit-s-adaface")
    args = parser.parse_args()
    from gradio_client import Client

    port = _free_port()
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    log = open(os.devnull, "w")
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        began = time.monotonic()
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:
                if time.monotonic() - began > 120:
                    raise SystemExit("the app did not start")
                time.sleep(0.5)
        print(f"app up after {time.monotonic() - began:.1f} s; warming up {args.backbone} (random weights)")
        _inspect(Client(url, verbose=False), EXAMPLES[0], args.backbone)

        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def user(index: int) -> None:
            client = Client(url, verbose=False)
            for request in range(args.requests):
                start = time.perf_counter()
                try:
                    _inspect(client, EXAMPLES[(index + request) % len(EXAMPLES)], args.backbone)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as error:
                    with lock:
                        errors.append(f"{type(error).__name__}: {str(error)[:120]}")

        threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        print(f"\n{args.users} users x {args.requests} /inspect requests in {wall:.1f} s: {len(errors)} error(s), "
              f"p50 {statistics.median(latencies):.2f} s, p95 {_percentile(latencies, 0.95):.2f} s, "
              f"{len(latencies) / wall:.2f} requests/s")
        for error in sorted(set(errors))[:5]:
            print(f"  error: {error}")

        answered, queue_full, other = 0, 0, []

        def burst_one(index: int) -> None:
            nonlocal answered, queue_full
            try:
                _inspect(Client(url, verbose=False), EXAMPLES[index % len(EXAMPLES)], args.backbone)
                with lock:
                    answered += 1
            except Exception as error:
                with lock:
                    if "queue is full" in str(error).lower():
                        queue_full += 1
                    else:
                        other.append(f"{type(error).__name__}: {str(error)[:120]}")

        burst = [threading.Thread(target=burst_one, args=(i,)) for i in range(args.burst)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        print(f"\nburst of {args.burst} simultaneous requests: {answered} answered, {queue_full} told the queue is full, "
              f"{len(other)} other failure(s)")
        for error in sorted(set(other))[:5]:
            print(f"  other: {error}")
        print(f"\nserver peak resident memory: {_peak_rss_mb(server.pid):.0f} MB")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    tracebacks = stderr.count("Traceback")
    print(f"server tracebacks: {tracebacks}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
