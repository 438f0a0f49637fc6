"""Peak memory (RSS) of train-sequence over every task of a dataset at the official sizes.

Runs ``train_sequence`` on all tasks (TERACON, width 256, 8 blocks, T1 batch 32, T2+ batch 1024:
the defaults) for ``--epochs`` epochs per task (default 1: memory peaks within a task's first epoch,
where retention distils every past task with rho = 0.9) in a fresh process per configuration, and
records the process's peak resident set size (``getrusage`` ru_maxrss, a running maximum) after
every task, so the task that raised the peak is visible::

    querylearn prepare movielens-100k --path /work/shared/data/movielens-100k --out /tmp/ml100k
    python bench/bench_memory.py --data /tmp/ml100k --threads 2 \\
        --variant default --variant 'exact:model.padding="exact"'

Reference (../shared/anchors/official-teracon-ml100k.md, another day): the official TERACON code's
peak RSS on MovieLens-100K was 501 MiB (T1), 5.05 GiB (T2), 6.93 GiB (T3), 688 MiB (T4), 774 MiB (T5),
each task in its own process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

OFFICIAL_PEAK_GIB = {"T1": 501 / 1024, "T2": 5.05, "T3": 6.93, "T4": 688 / 1024, "T5": 774 / 1024}
GIB = 1024**3


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _run(data: str, threads: int, epochs: int, sets: dict, queue) -> None:
    from querylearn.config_loader import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.loop import train_sequence

    cfg = load_config(
        TrainConfig,
        None,
        {
            "threads": threads,
            "precision": "fp32",
            "device": "cpu",
            "t1.max_epochs": epochs,
            "t2.max_epochs": epochs,
            "later.max_epochs": epochs,
            **sets,
        },
    )
    per_task: dict[str, float] = {}
    start_rss = peak_rss_bytes()

    def on_task_end(position: int, name: str, metrics: dict) -> None:
        per_task[name] = peak_rss_bytes() / GIB

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_sequence(data, Path(tmp) / "run", config=cfg, on_task_end=on_task_end)
    queue.put(
        {
            "peak_rss_gib": peak_rss_bytes() / GIB,
            "peak_rss_gib_after_task": per_task,
            "rss_gib_before_training": start_rss / GIB,
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "wall_seconds": time.perf_counter() - t0,
        }
    )


def measure(data: Path, threads: int, epochs: int, sets: dict) -> dict:
    """Train in a fresh (spawned) process, so that its peak RSS is this configuration's alone."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(str(data), threads, epochs, sets, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main(argv: list[str] | None = None) -> int:
    from querylearn.config_loader import parse_sets

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="dataset dir (querylearn prepare ...)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1, help="epochs per task")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME or NAME:key=value[;key=value...] (TrainConfig overrides); repeatable (default: 'default')",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "train_memory.json")
    args = ap.parse_args(argv)
    import torch

    results = {
        "dataset": str(args.data),
        "threads": args.threads,
        "epochs_per_task": args.epochs,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "official_peak_rss_gib": OFFICIAL_PEAK_GIB,
        "variants": {},
    }
    for spec in args.variant or ["default"]:
        name, _, overrides = spec.partition(":")
        sets = parse_sets([s for s in overrides.split(";") if s]) if overrides else {}
        r = {"sets": sets, **measure(args.data, args.threads, args.epochs, sets)}
        results["variants"][name] = r
        print(json.dumps({"variant": name, **{k: r[k] for k in ("peak_rss_gib", "peak_rss_gib_after_task")}}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
