"""Benchmark at portal scale: a partitioned synthetic log -> prepare (DuckDB) -> one T1 epoch.

Issue 15's figures are for 1,000,000 users (about 58 M query rows as partitioned Parquet): prepare time
and peak RSS (goal: under 10 minutes, under 4 GiB) and one T1 epoch with the sampled softmax (goal:
peak RSS under 8 GiB), plus data-parallel scaling (1 process x 2 threads against 2 processes x 1 thread).
Run it on an otherwise idle machine::

    python bench/bench_scale.py --users 1000000 --parts 64 --memory-limit 3GB --work /data/qlscale
    python bench/bench_scale.py --users 1000000 --reuse --skip-prepare --nproc 2 --threads 1
    python bench/bench_scale.py --users 20000 --parts 8 --threads 1 \
        --set model.channels=64 --set "model.dilations=[1,4]"   # a smoke check (minutes, not the figures)

Steps, each in its own child process (peak RSS = that process tree's largest resident set):
  1. generate: the synthetic Korean log of ``--users`` users, written block by block (``--parts``
     Hive-style partitions ``log/part=NNN/data.parquet``, users renamed per block so they stay unique),
     the label CSVs, the interactions and tasks.toml; skipped with ``--reuse``;
  2. prepare: ``querylearn prepare files --queries log/ --engine duckdb --memory-limit ...``;
  3. train: ``querylearn train-sequence --tasks T1 --epochs 1`` with ``next_query.sampled_softmax = K``
     (``--nproc N`` runs it data-parallel), reporting the epoch's training seconds (metrics.json) and
     samples/s, and the whole command's wall time (validation and the chunked test ranking included).

Results are printed and written to bench/results/scale_<users>.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

# a child that runs a command and prints its process tree's peak RSS (KiB on Linux) on its last line
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def measured(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` (output discarded) -> (wall seconds, peak RSS MiB of its largest process)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], stdout=subprocess.PIPE, check=True,
                          stderr=None, text=True)
    seconds = time.perf_counter() - t0
    return seconds, int(done.stdout.strip().splitlines()[-1]) / 1024


def generate(work: Path, users: int, parts: int, seed: int) -> dict:
    """The partitioned log + labels + interactions + tasks.toml under ``work``; returns counts."""
    from querylearn.data.synthetic import generate_synthetic_log

    (work / "log").mkdir(parents=True, exist_ok=True)
    per = -(-users // parts)
    rows = 0
    tasks: list[tuple[str, str]] = []
    for block in range(parts):
        n = min(per, users - block * per)
        if n <= 0:
            break
        gen = generate_synthetic_log(max(n, 100), seed=seed * 100_003 + block)
        rename = {u: f"b{block:03d}{u}" for u in gen.queries["user_id"].unique()}
        q = gen.queries.assign(user_id=gen.queries["user_id"].map(rename))
        q = q[q["user_id"].notna()]
        (work / "log" / f"part={block:03d}").mkdir(exist_ok=True)
        q.to_parquet(work / "log" / f"part={block:03d}" / "data.parquet", index=False)
        rows += len(q)
        tasks = gen.tasks
        mode, header = ("w", True) if block == 0 else ("a", False)
        for name, kind in gen.tasks:
            if kind != "next_query":
                lab = gen.labels[name].assign(user_id=gen.labels[name]["user_id"].map(rename))
                lab.to_csv(work / f"{name}.csv", index=False, mode=mode, header=header)
        inter = gen.interactions.assign(user_id=gen.interactions["user_id"].map(rename))
        inter.to_csv(work / "inter.csv", index=False, mode=mode, header=header)
        del gen, q
    lines = []
    for name, kind in tasks:
        lines += ["[[task]]", f'name = "{name}"', f'kind = "{kind}"']
        if kind != "next_query":
            lines.append(f'labels = "{name}.csv"')
        lines.append("")
    (work / "tasks.toml").write_text("\n".join(lines), encoding="utf-8")
    return {"log_rows": rows, "parts": parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=64, help="Parquet partitions of the log")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/qlscale"))
    ap.add_argument("--reuse", action="store_true", help="reuse the log already under --work")
    ap.add_argument("--skip-prepare", action="store_true", help="reuse the dataset already under --work")
    ap.add_argument("--engine", default="duckdb")
    ap.add_argument("--memory-limit", default="3GB")
    ap.add_argument("--seq-len", type=int, default=60)
    ap.add_argument("--sampled-softmax", type=int, default=1024, help="uniform negatives per batch (K)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="extra train-sequence config override key=value, e.g. model.channels=64; repeatable")
    args = ap.parse_args()

    work = args.work
    result: dict = {"users": args.users, "engine": args.engine, "memory_limit": args.memory_limit}
    if not (args.reuse and (work / "tasks.toml").is_file()):
        t0 = time.perf_counter()
        result.update(generate(work, args.users, args.parts, args.seed))
        result["generate_seconds"] = round(time.perf_counter() - t0, 1)
    log_files = sorted((work / "log").rglob("*.parquet"))
    result["log_parquet_mib"] = round(sum(p.stat().st_size for p in log_files) / 2**20, 1)
    ql = [sys.executable, "-m", "querylearn"]
    data = work / "dataset"
    if not args.skip_prepare:
        import shutil

        shutil.rmtree(data, ignore_errors=True)
        cmd = [*ql, "prepare", "files", "--queries", str(work / "log"), "--tasks", str(work / "tasks.toml"),
               "--interactions", str(work / "inter.csv"), "--seq-len", str(args.seq_len),
               "--engine", args.engine, "--out", str(data)]
        if args.engine != "pandas" and args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        seconds, rss = measured(cmd)
        result.update(prepare_seconds=round(seconds, 1), prepare_peak_rss_mib=round(rss))
    manifest = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    result.update(log_rows=manifest["summary"]["log_rows"], dataset_users=manifest["n_users"],
                  vocab_size=manifest["vocab_size"])
    if not args.skip_train:
        import shutil

        run = work / f"run_nproc{args.nproc}_threads{args.threads}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [*ql, "train-sequence", "--data", str(data), "--out", str(run), "--tasks", "T1",
               "--epochs", "1", "--strategy", "finetune", "--no-progress", "--nproc", str(args.nproc),
               "--set", f"next_query.sampled_softmax={args.sampled_softmax}",
               "--set", f"threads={args.threads}", "--set", f"t1.batch_size={args.batch_size}"]
        cmd += [a for item in args.sets for a in ("--set", item)]
        seconds, rss = measured(cmd)
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        epoch = metrics["seconds_per_epoch"][0]
        t1 = next(t for t in manifest["tasks"] if t["name"] == "T1")
        result.update(
            nproc=args.nproc, threads=args.threads, sampled_softmax=args.sampled_softmax,
            batch_size=args.batch_size, t1_epoch_seconds=round(epoch, 1),
            t1_samples_per_second=round(t1["splits"]["train"] / epoch),
            train_command_seconds=round(seconds, 1),
            train_peak_rss_mib=round(rss), t1_test_mrr5=metrics["R"][0][0], train_sets=args.sets,
        )
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / f"scale_{args.users}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
