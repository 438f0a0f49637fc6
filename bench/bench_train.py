"""Seconds per training epoch of train-sequence at the official sizes (width 256, 8 blocks).

Measures, on a dataset directory from ``querylearn prepare`` (e.g. MovieLens-100K):
  T1 epoch: next_query, batch 32, full softmax over the vocabulary (4.13 defaults);
  T2 epoch: the second task, batch 1024, TERACON with knowledge retention on T1.
One epoch each (max_epochs = 1), training time only (validation excluded), as recorded in
metrics.json["seconds_per_epoch"]. It also measures the convolutions alone at the T1 step shape
(``t1_conv_floor``): the time no T1 epoch at these sizes can beat on this machine. Run briefly and
once, on an otherwise idle machine::

    querylearn prepare movielens-100k --path /work/shared/data/movielens-100k --out /tmp/ml100k
    python bench/bench_train.py --data /tmp/ml100k --threads 2 --precision bf16 fp32

(On a CPU shared with other jobs use --threads 1: two OpenMP threads on two busy cores stall badly.)

Reference (issue 4): the official TERACON code on the same 2-core CPU spends about 0.5 s per T1
epoch and about 85 s per T2 epoch; the target is at most a fifth of that.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from querylearn.config_loader import load_config, parse_sets
from querylearn.continual.config import TrainConfig
from querylearn.continual.loop import train_sequence
from querylearn.data.dataset import load_manifest

OFFICIAL = {"T1": 0.5, "T2": 85.0}


def conv_floor(data: Path, threads: int, precision: str, repeats: int = 20) -> dict:
    """Lower bound of one T1 epoch at the official sizes from the convolutions alone.

    Times forward + backward (input and weight gradients) of each of the 16 causal convolutions
    (256 -> 256 channels, kernel 3, dilations 1,2,4,8 x 4) at the T1 step shape (batch 32, L-1
    positions), in the layout querylearn uses, and multiplies by the number of batches of 32 in
    T1's training split. Nothing else of a training step (embedding, LayerNorm, the softmax over
    the vocabulary, Adam) is counted, so a real epoch cannot be faster than this on this machine.
    """
    manifest = load_manifest(data)
    t1 = manifest["tasks"][0]
    n_train = int(t1["splits"]["train"])
    steps = n_train // 32
    length = int(manifest["seq_len"]) - 1
    channels, kernel = 256, 3
    dilations = [d * m for d in (1, 4, 1, 4, 1, 4, 1, 4) for m in (1, 2)]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.set_num_threads(threads)
    per_dilation = {}
    for d in sorted(set(dilations)):
        x = torch.randn(32, channels, 1, length + (kernel - 1) * d, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        w = torch.randn(channels, channels, 1, kernel, dtype=dtype)
        w = w.contiguous(memory_format=torch.channels_last).requires_grad_(True)

        def step(x=x, w=w, d=d):
            y = torch.nn.functional.conv2d(x, w, dilation=(1, d))
            torch.autograd.grad(y, (x, w), torch.ones_like(y))

        step()
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        per_dilation[d] = (time.perf_counter() - t0) / repeats
    conv_step = sum(per_dilation[d] for d in dilations)  # seconds per training step, convs only
    flops_step = 3 * len(dilations) * 32 * length * channels * channels * kernel * 2  # fwd + 2 bwd GEMMs
    return {
        "precision": precision,
        "t1_steps": steps,
        "positions_per_step": 32 * length,
        "conv_gflop_per_step": flops_step / 1e9,
        "conv_seconds_per_step": conv_step,
        "conv_gflops_per_second": flops_step / conv_step / 1e9,
        "t1_epoch_floor_seconds": steps * conv_step,
        "official_t1_implied_gflops_per_second": steps * flops_step / OFFICIAL["T1"] / 1e9,
    }


def bench(data: Path, precision: str, threads: int, seed: int = 0, sets: dict | None = None) -> dict:
    manifest = load_manifest(data)
    tasks = [t["name"] for t in manifest["tasks"]][:2]
    cfg = load_config(
        TrainConfig,
        None,
        {
            "strategy": "teracon",
            "tasks": tasks,
            "threads": threads,
            "precision": precision,
            "seed": seed,
            "t1.max_epochs": 1,
            "t2.max_epochs": 1,  # official sizes otherwise: width 256, 8 blocks, batch 32 / 1024
            **(sets or {}),
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        metrics = train_sequence(data, Path(tmp) / "run", config=cfg)
        wall = time.perf_counter() - t0
    spe = metrics["seconds_per_epoch"]
    return {
        "precision": precision,
        "tasks": tasks,
        "seconds_per_epoch": dict(zip(("T1", "T2"), spe, strict=True)),
        "ratio_to_official": {k: OFFICIAL[k] / v for k, v in zip(("T1", "T2"), spe, strict=True)},
        "R": metrics["R"],
        "wall_seconds": wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data", type=Path, required=True, help="dataset dir (querylearn prepare movielens-100k ...)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_speed.json")
    ap.add_argument("--set", action="append", default=[], help="TrainConfig section.key=value; repeatable")
    ap.add_argument(
        "--t2-batching", nargs="*", default=[], choices=["pair", "user"],
        help="extra runs (first --precision) with multi_target_batching set to each value (issue 14)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    sets = parse_sets(args.set)
    results = {
        "dataset": str(args.data),
        "source": load_manifest(args.data).get("source"),
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "official_seconds_per_epoch": OFFICIAL,
        "runs": [],
        "t1_conv_floor": [conv_floor(args.data, args.threads, p) for p in args.precision],
    }
    for floor in results["t1_conv_floor"]:
        print(json.dumps(floor))
    for precision in args.precision:
        r = bench(args.data, precision, args.threads, sets=sets)
        results["runs"].append(r)
        print(json.dumps({k: r[k] for k in ("precision", "seconds_per_epoch", "ratio_to_official")}))
    for mode in args.t2_batching:  # extra rows: T2 with per-user batches (multi_target_batching)
        r = bench(args.data, args.precision[0], args.threads, sets={**sets, "multi_target_batching": mode})
        results["runs"].append({"multi_target_batching": mode, **r})
        print(json.dumps({"multi_target_batching": mode, "seconds_per_epoch": r["seconds_per_epoch"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
