"""Benchmark: ``querylearn coldstart-eval`` on MovieLens-100K end to end, timed (target < 1 min on 2 cores).

Usage::

    python bench/bench_coldstart.py [--data ML100K_DATASET_DIR] [--run RUN_DIR ...] [--after-task T]
                                    [--users-from FILE.parquet ...] [--cold-fraction 0.3] [--out DIR]
                                    [--side-info N --side-dim D] [--workers W] [--baseline]

Dataset: ``--data``, else it is prepared into the output folder with
``querylearn prepare movielens-100k --path $QUERYLEARN_ML100K`` (default
``../shared/data/movielens-100k`` next to the repository; the raw files are never copied here).

Representations: every ``--run`` / ``--users-from`` given. With none, the benchmark writes a
side-information representation it can build without a trained model: the one-hot of each
user's gender, age group and occupation (the dataset's tasks T4, T5, T6; 30 dimensions). It is
not learnt from query history, but it is available for cold users and does not look at any
rating, so it checks the pipeline end to end without leaking the held-out item. For the README
table, pass the teracon run(s).

``--side-info N --side-dim D`` writes N such sources of width D instead (the one-hot times a fixed
Gaussian matrix, one seed per source): with N = 2, D = 256 the command fits the same methods at the
same sizes as the README's run (most-popular, ALS, BPR, NeuMF-id, NeuMF on a random 256-d
representation and on two 256-d sources), without a trained model: what ``bench/run_all.py`` times.

``--workers W`` is passed as ``--set workers=W`` (default: coldstart-eval's automatic choice);
``--baseline`` also times the same command with ``workers=1`` (every method one after another, the
straightforward loop) in the same sitting, and checks that both reports hold the same numbers.

The whole ``coldstart-eval`` command runs in a subprocess (so its time includes start-up and
data loading) with ``--threads 1`` (the default: NCF's small batches run fastest on one thread, which
leaves the second core free); the script prints the table, the wall time and writes
``bench.json`` next to the report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RAW = Path(os.environ.get("QUERYLEARN_ML100K", REPO.parent / "shared" / "data" / "movielens-100k"))


def querylearn(*args: str) -> list[str]:
    return [sys.executable, "-m", "querylearn.cli.main", *args]


def ensure_dataset(data: Path | None, out: Path) -> Path:
    if data is not None:
        return data
    target = out / "ml100k"
    if not (target / "dataset.json").is_file():
        if not (DEFAULT_RAW / "u.data").is_file():
            sys.exit(f"MovieLens-100K not found at {DEFAULT_RAW}; set QUERYLEARN_ML100K or pass --data")
        subprocess.run(
            querylearn(
                "prepare",
                "movielens-100k",
                "--path",
                str(DEFAULT_RAW),
                "--out",
                str(target),
                "--exclude-last-interaction",
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return target


def demographic_representation(data: Path, path: Path) -> Path:
    """One-hot gender | age group | occupation (tasks T4-T6) per user -> Parquet (user_id, v0..)."""
    import numpy as np
    import pandas as pd

    from querylearn.data.dataset import load_dataset

    ds = load_dataset(data)
    blocks = []
    for name in ("T4", "T5", "T6"):
        task = ds.task(name)
        onehot = np.zeros((ds.n_users, task.n_labels), dtype=np.float32)
        onehot[task.user_index, task.label] = 1.0
        blocks.append(onehot)
    vectors = np.concatenate(blocks, axis=1)  # [U, 30]
    frame = {"user_id": ds.user_ids, **{f"v{j}": vectors[:, j] for j in range(vectors.shape[1])}}
    pd.DataFrame(frame).to_parquet(path)
    return path


def side_information(data: Path, out: Path, n: int, dim: int) -> list[Path]:
    """``n`` sources of width ``dim``: the demographic one-hot [U, 30] times a fixed N(0, 1) [30, dim]."""
    import numpy as np
    import pandas as pd

    onehot = pd.read_parquet(demographic_representation(data, out / "demographics.parquet"))
    names = onehot.pop("user_id")
    paths = []
    for k in range(n):
        mix = np.random.default_rng([k, 29]).standard_normal((onehot.shape[1], dim)).astype(np.float32)
        vectors = onehot.to_numpy(np.float32) @ mix  # [U, dim]
        path = out / f"side{k + 1}-d{dim}.parquet"
        pd.DataFrame({"user_id": names, **{f"v{j}": vectors[:, j] for j in range(dim)}}).to_parquet(path)
        paths.append(path)
    return paths


def _numbers(report: dict) -> dict:
    return {name: {k: v for k, v in m.items() if k != "seconds"} for name, m in report["methods"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--run", type=Path, action="append", default=[])
    ap.add_argument("--after-task", action="append", default=[])
    ap.add_argument("--users-from", type=Path, action="append", default=[])
    ap.add_argument("--cold-fraction", type=float, default=0.3)
    ap.add_argument("--negatives", type=int, default=None, help="default: ColdstartConfig's")
    ap.add_argument("--seed", type=int, default=None, help="default: ColdstartConfig's")
    ap.add_argument("--config", type=Path, default=None, help="TOML with ColdstartConfig keys")
    ap.add_argument("--set", action="append", default=[], help="ColdstartConfig key=value; repeatable")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "querylearn-bench-coldstart")
    ap.add_argument("--side-info", type=int, default=0, help="N side-information sources (no --run needed)")
    ap.add_argument("--side-dim", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None, help="ColdstartConfig.workers (default: automatic)")
    ap.add_argument("--baseline", action="store_true", help="also time workers=1 (the loop) in this sitting")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    data = ensure_dataset(args.data, args.out)
    users_from = list(args.users_from)
    if args.side_info:
        users_from += side_information(data, args.out, args.side_info, args.side_dim)
    elif not users_from and not args.run:
        users_from = [demographic_representation(data, args.out / "demographics.parquet")]
    report_dir = args.out / "report"
    cmd = querylearn(
        "coldstart-eval", "--data", str(data), "--out", str(report_dir),
        "--cold-fraction", str(args.cold_fraction), "--threads", "1",
    )  # fmt: skip
    for flag, value in (("--negatives", args.negatives), ("--seed", args.seed), ("--config", args.config)):
        if value is not None:
            cmd += [flag, str(value)]
    for item in args.set:
        cmd += ["--set", item]
    if args.workers is not None:
        cmd += ["--set", f"workers={args.workers}"]
    for r in args.run:
        cmd += ["--run", str(r)]
    for t in args.after_task:
        cmd += ["--after-task", t]
    for u in users_from:
        cmd += ["--users-from", str(u)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    seconds = time.perf_counter() - t0
    sys.stdout.write(proc.stdout)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        sys.exit(proc.returncode)
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    workers = [ln for ln in proc.stdout.splitlines() if "worker processes" in ln]
    summary = {
        "command": " ".join(cmd[2:]).replace("querylearn.cli.main", "querylearn"),
        "wall_seconds": round(seconds, 2),
        "workers": int(workers[0].split(" in ")[1].split()[0]) if workers else 1,
        "target_seconds": 30,
        "within_target": seconds < 30,
        "counts": report["counts"],
        "hr@10": {
            name: {g: m[g]["hr@10"] for g in ("warm", "cold", "all")} for name, m in report["methods"].items()
        },
    }
    if args.baseline:
        base_dir = args.out / "report-loop"
        base_cmd = [*cmd, "--set", "workers=1"]
        base_cmd[base_cmd.index(str(report_dir))] = str(base_dir)
        t0 = time.perf_counter()
        subprocess.run(base_cmd, text=True, capture_output=True, check=True)
        summary["baseline_wall_seconds"] = round(time.perf_counter() - t0, 2)
        loop = json.loads((base_dir / "report.json").read_text(encoding="utf-8"))
        summary["baseline_same_numbers"] = _numbers(loop) == _numbers(report)
        if not summary["baseline_same_numbers"]:
            sys.exit(f"{base_dir / 'report.json'}: workers=1 gives other numbers than {report_dir}")
        print(f"the loop (workers=1): {summary['baseline_wall_seconds']:.1f}s, same numbers")
    (args.out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(
        f"coldstart-eval wall time: {seconds:.1f}s with {summary['workers']} worker(s) "
        f"(target < 30s on 2 cores); "
        f"wrote {args.out / 'bench.json'}"
    )


if __name__ == "__main__":
    main()
