"""Scoring throughput: our capture path vs a plain forward to the same block vs the release's explicit full forward.

    python benchmarks/bench_scoring.py [--models ...] [--batches 1 8 64] [--device cpu|cuda]

Per model (seeded random weights, ``load_backbone(name, random_init=True)``) and batch size:
  ours     attn_core.scoring.quality.attention_stats: blocks before the last through fused SDPA, the last block's norm1+qkv
           only, q/k captured by the hook, score via the mean-over-queries product (what score_faces runs).
  plain    the same forward to the same qkv (same micro-batches) with no hook and no score: capture overhead.
  release  the release's path: every block with attention written out (materialised (B,H,N,N) logits, softmax,
           @v), the last block's logits kept and averaged. The embedding head is not run (it would only make
           the baseline slower), so the speedup is a lower bound.
FLOPs count the work the score needs (patch embedding, the blocks before the last, q and k of the last, the
mean-query product); achieved GFLOP/s is that over our time, next to a large fp32 torch.matmul on this machine.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import (
    MODELS,
    header,
    interleaved,
    load_average,
    matmul_rate,
    pick_device,
    ratio,
    table,
)

from attn_core.scoring import quality
from attn_core.scoring.quality import attention_stats, micro_batch_size
from attn_core.zoo.backbone import Backbone, load_backbone
from attn_core.zoo.specs import BackboneSpec

DEFAULT_ROUNDS = {1: 10, 8: 5, 64: 3}


def needed_flops(spec: BackboneSpec, block: int) -> float:
    """Multiply-adds x 2 per image for the score of ``block`` (norms, softmax and adds are ignored)."""
    tokens, dim = spec.num_tokens, spec.embed_dim
    hidden = int(round(dim * spec.mlp_ratio))
    embed = 2 * spec.num_patches * dim * 3 * spec.patch_size**2
    full_block = 2 * tokens * (3 * dim * dim + dim * dim + 2 * dim * hidden) + 2 * 2 * tokens * tokens * dim
    last = 2 * tokens * 2 * dim * dim + 2 * 2 * tokens * dim  # q and k, then the two mean-query rows against k
    return embed + block * full_block + last


def release_scores(backbone: Backbone, images: torch.Tensor) -> torch.Tensor:
    """The release's way: run every block with explicit attention, average the last block's pre-softmax logits."""
    model = backbone.model
    with torch.inference_mode():
        tokens = model.embed_tokens(images)
        for blk in model.blocks:
            attn = blk.attn
            hidden = blk.norm1(tokens)
            batch, num_tokens, dim = hidden.shape
            qkv = attn.qkv(hidden).reshape(batch, num_tokens, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            logits = (q.float() @ k.float().transpose(-2, -1)) * attn.scale  # (B, H, N, N), materialised
            out = (logits.softmax(dim=-1) @ v.float()).to(hidden.dtype).transpose(1, 2).reshape(batch, num_tokens, dim)
            tokens = tokens + attn.proj(out)
            tokens = tokens + blk.mlp(blk.norm2(tokens))
        return logits.mean(dim=(1, 2, 3))


def plain_forward(backbone: Backbone, images: torch.Tensor, index: int) -> None:
    """The forward our path runs (same micro-batches) with no hook and no score."""
    step = micro_batch_size(backbone)
    target = backbone.blocks[index]
    with torch.inference_mode():
        for start in range(0, images.shape[0], step):
            tokens = backbone.tokens_before(quality.pad_chunk(images[start : start + step], step), index)
            target.attn.qkv(target.norm1(tokens))


def our_scores(backbone: Backbone, images: torch.Tensor, index: int) -> np.ndarray:
    stats, _ = attention_stats(backbone, images, index)
    return np.array([s.key_means_all.mean() for s in stats])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--rounds", type=int, help="timed rounds per path (default: 10 / 5 / 3 for batch 1 / 8 / 64)")
    parser.add_argument("--device")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--micro", type=int,
                        help="override quality.CPU_FORWARD_IMAGES (images per CPU forward, the last chunk padded)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.micro:
        quality.CPU_FORWARD_IMAGES = args.micro
    device = pick_device(args.device)
    print(header("Scoring throughput (fp32, inference mode)", device))
    print(f"- images per CPU forward: {quality.CPU_FORWARD_IMAGES} (the last chunk padded)")
    peak = matmul_rate(device)
    print(f"- fp32 torch.matmul (best of 1024/2048, 10 repeats each): {peak:.0f} GFLOP/s (the roofline below)\n")
    rows = []
    for name in args.models:
        backbone = load_backbone(name, random_init=True, seed=0, device=device)
        index = backbone.block_index(-1)
        flops = needed_flops(backbone.spec, index)
        for batch in args.batches:
            generator = torch.Generator().manual_seed(batch)
            images = torch.randn(batch, 3, backbone.spec.input_size, backbone.spec.input_size, generator=generator)
            images = images.to(device)
            difference = np.abs(our_scores(backbone, images, index) - release_scores(backbone, images).double().cpu().numpy()).max()
            times = interleaved(
                {
                    "ours": lambda: attention_stats(backbone, images, index),
                    "plain": lambda: plain_forward(backbone, images, index),
                    "release": lambda: release_scores(backbone, images),
                },
                rounds=args.rounds or DEFAULT_ROUNDS.get(batch, 3),
                device=device,
            )
            ours = times["ours"].wall_median / batch
            achieved = flops / ours / 1e9
            rows.append({
                "model": name, "batch": batch, "micro": micro_batch_size(backbone, batch),
                "ours ms/img": f"{ours * 1e3:.1f}", "ours img/s": f"{1 / ours:.1f}",
                "plain ms/img": f"{times['plain'].wall_median / batch * 1e3:.1f}",
                "ours/plain wall": f"{ratio(times['ours'], times['plain']):.3f}",
                "ours/plain cpu": f"{ratio(times['ours'], times['plain'], 'cpu'):.3f}",
                "release ms/img": f"{times['release'].wall_median / batch * 1e3:.1f}",
                "ours/release wall": f"{ratio(times['ours'], times['release']):.3f}",
                "speedup wall": f"{ratio(times['release'], times['ours']):.2f}x",
                "speedup cpu": f"{ratio(times['release'], times['ours'], 'cpu'):.2f}x",
                "GFLOP/img": f"{flops / 1e9:.2f}", "GFLOP/s": f"{achieved:.0f}",
                "roofline": f"{achieved / peak:.0%}", "max|dscore|": f"{difference:.1e}",
            })
            print(f"  done {name} batch {batch} (load {load_average()})", flush=True)
    print()
    print(table(rows))
    print(f"\n- load average at end: {load_average()}")


if __name__ == "__main__":
    main()
