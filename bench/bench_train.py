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

Each configuration trains in a fresh process, whose peak resident set size is reported
(``peak_rss_gib``). ``--t1-only`` skips T2; ``--variant NAME:key=value;...`` (repeatable) measures
several configurations in one sitting, e.g. the padding-exact model with length buckets::

    python bench/bench_train.py --data /tmp/ml100k --threads 2 --t1-only \
        --variant parity --variant 'exact:model.padding="exact";length_buckets=true'

Output JSON (``--out``): ``official_seconds_per_epoch`` (the reference below), ``t1_conv_floor`` (one
entry per precision: ``t1_epoch_floor_seconds``, ``conv_gflops_per_second``, ...), ``runs`` (one per
precision and variant: ``precision``, ``variant``, ``sets``, ``tasks``, ``seconds_per_epoch``,
``ratio_to_official`` (official / querylearn, from another day), ``t1_ratio_to_floor`` (querylearn T1
/ the conv floor of the same sitting), ``peak_rss_gib``, ``R``, ``wall_seconds``), ``load_average``
and ``threads``.

Reference (../shared/anchors/official-teracon-ml100k.md, measured on another day on a machine of
this kind): the official TERACON code's training loop spends about 3 s per T1 epoch (22 batches of
32) and 91 s per T2 epoch (26 x 1024, retention on T1), peak RSS 5.05 GiB (T2) and 6.93 GiB (T3).
Issue 14 measured the official T2 epoch again on another day at 168 s (peak RSS 4.6 GiB): absolute
times vary by 2x between days and CPUs, so the ratios to the official code are from another day; the
conv floor is measured in the same sitting.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from querylearn.config_loader import load_config, parse_sets
from querylearn.continual.config import TrainConfig
from querylearn.continual.loop import train_sequence
from querylearn.data.dataset import load_manifest

OFFICIAL = {"T1": 3.0, "T2": 91.0}  # ../shared/anchors/official-teracon-ml100k.md (another day)
OFFICIAL_PEAK_RSS_GIB = {"T1": 501 / 1024, "T2": 5.05, "T3": 6.93}


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


def bench(
    data: Path, precision: str, threads: int, seed: int = 0, sets: dict | None = None, n_tasks: int = 2
) -> dict:
    manifest = load_manifest(data)
    tasks = [t["name"] for t in manifest["tasks"]][:n_tasks]
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
    names = ("T1", "T2")[: len(spe)]
    return {
        "precision": precision,
        "tasks": tasks,
        "seconds_per_epoch": dict(zip(names, spe, strict=True)),
        "ratio_to_official": {k: OFFICIAL[k] / v for k, v in zip(names, spe, strict=True)},
        "R": metrics["R"],
        "wall_seconds": wall,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,  # KiB -> GiB
    }


def _bench_child(queue, *args) -> None:
    queue.put(bench(*args))


def bench_in_process(*args) -> dict:
    """:func:`bench` in a fresh (spawned) process, so that its peak RSS is this run's alone."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_bench_child, args=(queue, *args))
    proc.start()
    result = queue.get()
    proc.join()
    return result


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
    ap.add_argument("--t1-only", action="store_true", help="measure T1 only (no T2 epoch)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME or NAME:key=value[;key=value...]: TrainConfig overrides on top of --set; repeatable",
    )
    args = ap.parse_args(argv)
    sets = parse_sets(args.set)
    variants = []
    for spec in args.variant or ["default"]:
        name, _, overrides = spec.partition(":")
        variants.append((name, {**sets, **parse_sets([o for o in overrides.split(";") if o])}))
    results = {
        "dataset": str(args.data),
        "source": load_manifest(args.data).get("source"),
        "threads": args.threads,
        "load_average": os.getloadavg(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "official_seconds_per_epoch": OFFICIAL,
        "official_peak_rss_gib": OFFICIAL_PEAK_RSS_GIB,
        "runs": [],
        "t1_conv_floor": [conv_floor(args.data, args.threads, p) for p in args.precision],
    }
    floors = {f["precision"]: f["t1_epoch_floor_seconds"] for f in results["t1_conv_floor"]}
    for floor in results["t1_conv_floor"]:
        print(json.dumps(floor))
    n_tasks = 1 if args.t1_only else 2
    for precision in args.precision:
        for name, variant_sets in variants:
            r = bench_in_process(args.data, precision, args.threads, 0, variant_sets, n_tasks)
            r = {"variant": name, "sets": variant_sets, **r}
            r["t1_ratio_to_floor"] = r["seconds_per_epoch"]["T1"] / floors[precision]
            results["runs"].append(r)
            keys = ("precision", "variant", "seconds_per_epoch", "ratio_to_official", "t1_ratio_to_floor",
                    "peak_rss_gib")
            print(json.dumps({k: r[k] for k in keys}))
    for mode in args.t2_batching:  # extra rows: T2 with per-user batches (multi_target_batching)
        variant_sets = {**sets, "multi_target_batching": mode}
        r = bench_in_process(args.data, args.precision[0], args.threads, 0, variant_sets, 2)
        r = {"variant": f"t2-{mode}", "multi_target_batching": mode, "sets": variant_sets, **r}
        results["runs"].append(r)
        print(json.dumps({"multi_target_batching": mode, "seconds_per_epoch": r["seconds_per_epoch"],
                          "peak_rss_gib": r["peak_rss_gib"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
