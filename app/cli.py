"""``attn-fiqa app`` (and ``python -m app``): launch the web app, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse


def _add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="require this login (use it, with https, whenever the app is reachable beyond localhost)")
    parser.add_argument("--ssl-certfile", help="serve https with this certificate (browsers allow the webcam only on "
                        "https or localhost)")
    parser.add_argument("--ssl-keyfile", help="the certificate's private key")
    parser.add_argument("--weights", help="serve your own checkpoint (file, Hugging Face style folder or "
                        "hf://owner/repo[/file]) as the default backbone")
    parser.add_argument("--backbone", default="", help="the registry name of --weights' architecture (default: read "
                        "a face-ViT architecture from the file; pass --num-heads if it has no config.json)")
    parser.add_argument("--num-heads", type=int, help="head count of --weights when the file's architecture is used")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                        help="arithmetic of the blocks for every request: auto (default: bf16 where the CPU has bf16 "
                             "matrix units or on GPUs, which cuts the request p50 from 164 to 100 ms for the ViT-S "
                             "shape here; else fp32), fp32 (the reference numbers), bf16/fp16; results show which")
    parser.add_argument("--live-limit", type=float, default=None, metavar="SECONDS",
                        help="a Live webcam stream stops by itself after this many seconds (default 600, or "
                             "$ATTN_FIQA_LIVE_LIMIT_S), so a forgotten tab does not hold the CPU")


def add_app_parser(subparsers) -> None:
    """Register the ``app`` sub-command on the ``attn-fiqa`` CLI."""
    parser = subparsers.add_parser("app", help="launch the web app (inspect, degradations, compare, batch, evaluate)")
    _add_options(parser)
    parser.set_defaults(func=cmd_app)


def cmd_app(args: argparse.Namespace) -> int:
    from app.ui import launch

    if args.backbone and not args.weights:
        raise ValueError("--backbone names the architecture of --weights FILE; pass --weights too (the app lists "
                         "every registered backbone without it).")
    extra = {}
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise ValueError("--auth takes USER:PASSWORD, e.g. --auth alice:s3cret")
        extra["auth"] = (user, password)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise ValueError("https needs both --ssl-certfile and --ssl-keyfile")
    if args.ssl_certfile:
        extra.update(ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    _stop_cleanly_on_sigterm()
    _few_heap_arenas()
    demo = launch(host=args.host, port=args.port, share=args.share, weights=args.weights, backbone=args.backbone,
                  num_heads=args.num_heads, precision=args.precision, live_limit=args.live_limit, **extra)
    # Stopped (Ctrl-C or SIGTERM): Gradio's own "delete every cached copy" runs in its server's shutdown, which a
    # stop can cut short (a copy of a CSV or picture sent to a client was seen to outlive it); run it once more here.
    from gradio.route_utils import delete_files_created_by_app

    if demo is not None:
        delete_files_created_by_app(demo, None)
    return 0


# glibc's mallopt parameter for the number of heaps ("arenas") threads may use; 8 per core by default.
M_ARENA_MAX = -8
HEAP_ARENAS = 2


def _few_heap_arenas() -> None:
    """At most HEAP_ARENAS malloc heaps for the server's threads (as MALLOC_ARENA_MAX=2 would). Every request runs
    in a thread of its own and glibc hands threads heaps of their own, each keeping the pages its requests freed:
    the server's RSS grew round after round of load (+12 %, +13 %, +15 % of its warm-up level, and stayed there
    idle) against +4 %, +5 %, +6 % with two heaps (benchmarks/RESULTS.md). A no-op off glibc."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, HEAP_ARENAS)
    except (OSError, AttributeError):
        pass


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM (what ``kill``, systemd and docker send) stops the server as Ctrl-C does: Gradio closes, deleting its
    copies of what requests uploaded and were sent, and the app's temp folder goes at exit. Python's default for
    SIGTERM ends the process at once, leaving every temp file of every request behind."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.splitlines()[0])
    _add_options(parser)
    try:
        return cmd_app(parser.parse_args(argv))
    except (ValueError, RuntimeError, FileNotFoundError) as error:  # a bad --weights file: one line, no traceback
        print(f"python -m app: {error}", file=sys.stderr)
        return 2
