"""files/s of ``attn-fiqa score --engine ray`` against the local engine on the same files, and 1 vs 2 actors.

    python benchmarks/bench_ray.py [--files 500] [--backbone insightface-vit-t] [--cpus 2]

The files are the bundled example photos copied round-robin into a temp folder (decode, detect, align and score
all run for each). Local: ``attn-fiqa score --out x.csv`` in this process (``--workers 1``: decoding in one
DataLoader worker, as a user with 2 cores would run it). Ray: a local cluster started here with ``--cpus`` CPUs,
decode tasks of 1 CPU, an actor pool of ``--actors`` actors (CPUs per actor: 1 with one actor, 0.5 with two, so
decoding keeps a CPU). Every path scores in fp32 with seeded random weights; Ray's cluster start is timed apart
from the job (a real cluster is started once for many jobs).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from common import ROOT, load_average, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--backbone", default="insightface-vit-t")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()

    import ray

    from attn_core.batch.ray_engine import RayJob, run
    from attn_core.cli.main import main as cli

    work = Path(tempfile.mkdtemp(prefix="attn_fiqa_bench_ray_"))
    examples = sorted((ROOT / "assets" / "examples").glob("*.*"))
    folder = work / "in"
    folder.mkdir()
    for index in range(args.files):
        source = examples[index % len(examples)]
        shutil.copy(source, folder / f"{index:05d}{source.suffix}")
    print(f"## Scale-out: --engine ray vs the local engine, {args.files} files, {args.backbone} (random weights, fp32)\n")
    print(f"- load average at start: {load_average()}")
    rows = []
    common = ["--backbone", args.backbone, "--random-init", "--precision", "fp32", "--quiet"]
    start = time.perf_counter()
    assert cli(["score", str(folder), *common, "--workers", "1", "--out", str(work / "local.csv")]) == 0
    local = time.perf_counter() - start
    rows.append({"engine": "local (--workers 1)", "actors": "-", "seconds": f"{local:.1f}",
                 "files/s": f"{args.files / local:.1f}", "vs local": "1.00x"})
    start = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    print(f"- Ray local cluster start: {time.perf_counter() - start:.1f} s (not in the job times)")
    for actors in (1, 2):
        job = RayJob(backbone=args.backbone, random_init=True, precision="fp32", batch_size=32, actors=actors,
                     cpus_per_actor=1.0 if actors == 1 else 0.5)
        summary = run([str(folder)], str(work / f"ray_{actors}"), job, progress=False)
        seconds = summary["seconds"]
        rows.append({"engine": "ray", "actors": str(actors), "seconds": f"{seconds:.1f}",
                     "files/s": f"{args.files / seconds:.1f}", "vs local": f"{local / seconds:.2f}x"})
        print(f"  done ray with {actors} actor(s) (load {load_average()})", flush=True)
    ray.shutdown()
    print()
    print(table(rows))
    print(f"\n- Ray overhead on one machine = 1 - (ray files/s / local files/s) with 1 actor; load at end: {load_average()}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
