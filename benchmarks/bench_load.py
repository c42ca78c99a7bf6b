"""Concurrent users against a started app: errors, latency percentiles, CPU per request and the server's peak memory.

    python benchmarks/bench_load.py [--users 8] [--requests 25] [--burst 40] [--backbone cvlface-vit-s-adaface]
                                    [--client http|gradio_client]

Starts ``python -m app`` on a free loopback port (a separate process, as a user would), then:
1. ``--users`` users, each sending ``--requests`` /inspect requests in turn (a new example photo each time, uploaded
   first; random weights of ``--backbone``: the ViT-S shape), each request complete only when every picture of the
   answer is downloaded whole (as a browser fetches them); prints errors, p50 and p95 of the request latency;
2. a burst of ``--burst`` simultaneous requests: each must be answered, or told clearly that the queue is full;
   truncated responses and server tracebacks are counted.

Clients: ``http`` (default) speaks Gradio's documented HTTP API (``/gradio_api/upload``, ``/gradio_api/call/<name>``
and its event stream, then a GET per picture, each checked against its Content-Length and decoded), about as light
as a browser tab; ``gradio_client`` uses the official Python client, which costs about 3x the server's own CPU per
request, so on a 2-core machine the clients, not the server, set the latency. The clients share the machine with
the server either way; the CPU line says how the cores were spent. Targets (2-core CPU, idle): 0 errors, p95 <= 2.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import shutil
import tempfile
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


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def _inspect_inputs(photo, backbone: str, centre_crop: bool = False) -> list:
    """/inspect's inputs: photo, backbone, random weights, block, heads, aggregation, tokens, face, view, colormap,
    opacity, normalisation, vmin, vmax, centre crop."""
    return [photo, backbone, True, -1, [], "mean", "all", 0, -1, "jet", 0.4, "per image", None, None, centre_crop]


class QueueFull(RuntimeError):
    pass


class HttpUser:
    """One user on Gradio's HTTP API: upload, call, read the event stream, fetch every picture of the answer."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=120)

    def inspect(self, photo: Path, backbone: str, centre_crop: bool = False) -> int:
        import cv2
        import numpy as np

        with photo.open("rb") as handle:
            upload = self.http.post(f"{self.url}/gradio_api/upload", files={"files": (photo.name, handle)})
        upload.raise_for_status()
        data = {"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}, "orig_name": photo.name}
        call = self.http.post(f"{self.url}/gradio_api/call/inspect", json={"data": _inspect_inputs(data, backbone, centre_crop)})
        if call.status_code == 503:
            raise QueueFull(call.text)
        call.raise_for_status()
        event_id = call.json()["event_id"]
        event, payload = None, None
        with self.http.stream("GET", f"{self.url}/gradio_api/call/inspect/{event_id}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    payload = line.split(":", 1)[1].strip()
                    break
        if event != "complete":
            if payload and "queue is full" in payload.lower():
                raise QueueFull(payload)
            raise RuntimeError(f"event {event}: {payload}")
        pictures = 0
        for link in _urls(json.loads(payload)):
            response = self.http.get(link)
            response.raise_for_status()
            declared = int(response.headers.get("content-length", len(response.content)))
            if len(response.content) != declared:
                raise RuntimeError(f"truncated picture: {len(response.content)} of {declared} bytes")
            if cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR) is None:
                raise RuntimeError("a picture that does not decode")
            pictures += 1
        return pictures


def _urls(value) -> list[str]:
    """Every file URL in an answer (pictures, gallery items)."""
    if isinstance(value, dict):
        found = [value["url"]] if isinstance(value.get("url"), str) and value.get("path") else []
        return found + [u for v in value.values() if isinstance(v, (dict, list)) for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return []


class GradioClientUser:
    """One user on the official gradio_client (downloads every picture too)."""

    def __init__(self, url: str) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False)

    def inspect(self, photo: Path, backbone: str) -> int:
        from gradio_client import handle_file

        try:
            self.client.predict(*_inspect_inputs(handle_file(str(photo)), backbone), api_name="/inspect")
        except Exception as error:
            if "queue is full" in str(error).lower():
                raise QueueFull(str(error)) from None
            raise
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25)
    parser.add_argument("--burst", type=int, default=40)
    parser.add_argument("--backbone", default="cvlface-vit-s-adaface")
    parser.add_argument("--client", choices=["http", "gradio_client"], default="http")
    parser.add_argument("--precision", default="auto", help="the app's --precision (default auto, as it launches)")
    parser.add_argument("--rounds", type=int, default=1, help="load rounds; the server's RSS is printed after each")
    parser.add_argument("--idle", type=float, default=0, help="seconds idle after the rounds, then RSS once more")
    args = parser.parse_args()
    make_user = HttpUser if args.client == "http" else GradioClientUser

    port = _free_port()
    server_tmp = Path(tempfile.mkdtemp(prefix="bench_load_tmp_"))  # the server's own temp dir: leftovers are counted
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT),
                        "TMPDIR": str(server_tmp), "GRADIO_TEMP_DIR": str(server_tmp / "gradio")}
    log = open(os.devnull, "w")
    server = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--precision", args.precision],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        began = time.monotonic()
        while True:
            try:
                warm = make_user(url)
                warm.inspect(EXAMPLES[0], args.backbone)
                break
            except Exception:
                if time.monotonic() - began > 180:
                    raise SystemExit("the app did not start")
                time.sleep(0.5)
        print(f"app up and {args.backbone} warm (random weights) after {time.monotonic() - began:.1f} s; "
              f"client: {args.client}")

        warm_rss = _rss_mb(server.pid)
        print(f"server RSS after warm-up: {warm_rss:.0f} MB")
        lock = threading.Lock()
        for round_number in range(1, args.rounds + 1):
            latencies: list[float] = []
            errors: list[str] = []
            pictures: list[int] = []

            def user(index: int) -> None:
                person = make_user(url)
                for request in range(args.requests):
                    start = time.perf_counter()
                    try:
                        count = person.inspect(EXAMPLES[(index + request) % len(EXAMPLES)], args.backbone)
                        with lock:
                            latencies.append(time.perf_counter() - start)
                            pictures.append(count)
                    except Exception as error:
                        with lock:
                            errors.append(f"{type(error).__name__}: {str(error)[:120]}")

            threads = [threading.Thread(target=user, args=(i,)) for i in range(args.users)]
            server_cpu, client_cpu = _cpu_seconds(server.pid), _cpu_seconds(os.getpid())
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
            server_cpu, client_cpu = _cpu_seconds(server.pid) - server_cpu, _cpu_seconds(os.getpid()) - client_cpu
            done = max(len(latencies), 1)
            print(f"\n{args.users} users x {args.requests} /inspect requests in {wall:.1f} s: {len(errors)} error(s), "
                  f"p50 {statistics.median(latencies):.2f} s, p95 {_percentile(latencies, 0.95):.2f} s, "
                  f"{len(latencies) / wall:.2f} requests/s"
                  + (f", {statistics.mean(pictures):.0f} pictures downloaded whole per answer" if any(pictures) else ""))
            print(f"CPU per request: server {1000 * server_cpu / done:.0f} ms, the {args.users} clients "
                  f"{1000 * client_cpu / done:.0f} ms (clients and server share the {os.cpu_count()} cores)")
            for error in sorted(set(errors))[:5]:
                print(f"  error: {error}")

            rss = _rss_mb(server.pid)
            print(f"server RSS after round {round_number}: {rss:.0f} MB ({100 * (rss / warm_rss - 1):+.0f} % of warm-up)")
        if args.idle:
            time.sleep(args.idle)
            rss = _rss_mb(server.pid)
            print(f"server RSS after {args.idle:.0f} s idle: {rss:.0f} MB ({100 * (rss / warm_rss - 1):+.0f} % of warm-up)")

        answered, queue_full, other = 0, 0, []
        ready = threading.Barrier(args.burst) if args.burst else None

        def burst_one(index: int) -> None:
            nonlocal answered, queue_full
            person = make_user(url)
            ready.wait()  # every client connected: the requests leave together
            try:
                person.inspect(EXAMPLES[index % len(EXAMPLES)], args.backbone)
                with lock:
                    answered += 1
            except QueueFull:
                with lock:
                    queue_full += 1
            except Exception as error:
                with lock:
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
    left = [p for p in server_tmp.rglob("*") if p.is_file()]
    print(f"files left in the server's temp dir after it stopped: {len(left)} "
          f"({sum(p.stat().st_size for p in left) / 2**20:.1f} MB)")
    shutil.rmtree(server_tmp, ignore_errors=True)
    tracebacks = stderr.count("Traceback")
    print(f"server tracebacks: {tracebacks}")
    if tracebacks:
        print(stderr[-2000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
