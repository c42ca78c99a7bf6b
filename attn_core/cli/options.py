"""The command-line options every model-using command shares (``score``, ``eval``, ``sweep``), in one place that
``attn_core.cli.main`` and ``attn_core.cli.eval`` both import (so neither imports the other)."""

from __future__ import annotations

import argparse

from attn_core.scoring.quality import AGGREGATIONS, PRECISION_CHOICES, TOKEN_MODES
from attn_core.zoo.registry import ONLINE_DEFAULT


def _parse_heads(text: str | None) -> tuple[int, ...] | None:
    if text is None or text.strip().lower() in ("", "all"):
        return None
    try:
        return tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--heads takes head numbers like '0,3,5' or 'all', not {text!r}") from None


def add_backbone_arguments(parser: argparse.ArgumentParser, compile_option: bool = True,
                           precision_default: str = "auto") -> None:
    """The options every model-using command shares. ``--precision`` defaults to "auto" for batch work (bf16 where
    the CPU has bf16 matrix units or on GPUs, else fp32; results record which); ``--compile`` only where it pays."""
    parser.add_argument("--backbone", default="", help="registry name or timm name (default: the first installed "
                        f"face-trained backbone; online, {ONLINE_DEFAULT} is downloaded on first use)")
    parser.add_argument("--weights", help="checkpoint file, Hugging Face style folder, or hf://owner/repo[/file]")
    parser.add_argument("--num-heads", type=int, help="head count, for checkpoints whose architecture is read from the file")
    parser.add_argument("--random-init", action="store_true", help="seeded random weights (tests/teaching only)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=precision_default,
                        help="arithmetic of the blocks: fp32 (the reference, exact to the method's code), bf16/fp16 "
                             "autocast (2-3x faster on CPUs with AMX/AVX512-BF16 and on GPUs; ranking kept to "
                             f"Spearman >= 0.999), auto: bf16 where the hardware has it, else fp32 (default: {precision_default})")
    if compile_option:
        parser.add_argument("--compile", action="store_true", help="run the blocks through torch.compile (slow first call)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (1 is fastest on a busy shared CPU; default: torch's choice)")


def add_score_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--block", type=int, default=-1, help="transformer block to read (default -1: the last)")
    parser.add_argument("--heads", type=_parse_heads, default=None, help="heads to use, e.g. '0,3' (default: all)")
    parser.add_argument("--aggregation", default="mean", choices=list(AGGREGATIONS))
    parser.add_argument("--tokens", default="all", choices=list(TOKEN_MODES),
                        help="all tokens (the paper's definition) or patch tokens only, for models with CLS/registers")
