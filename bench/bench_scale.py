"""Benchmark at portal scale: a partitioned synthetic log -> prepare (DuckDB) -> one T1 epoch.

Issue 15's figures are for 1,000,000 users (55.0 M query rows as partitioned Parquet): prepare time
and peak RSS (goal: under 10 minutes, under 4 GiB) and one T1 epoch with the sampled softmax (goal:
peak RSS under 8 GiB), plus data-parallel scaling (1 process x 2 threads against 2 processes x 1 thread).
The measured figures and their exact commands are in docs/scale.md::

    python bench/bench_scale.py --users 1000000 --parts 64 --memory-limit 2GB --work W --skip-train
    python bench/bench_scale.py --users 1000000 --reuse --skip-prepare --work W --train-steps 30 \
        --eval-rows 2048 --threads 2 --set model.channels=64 --set "model.dilations=[1,4]"
    python bench/bench_scale.py --users 10000 --parts 4 --work W10 --threads 2 --nproc 1 \
        --set model.channels=64 --set "model.dilations=[1,4]"       # then --reuse --skip-prepare
                                                                    # --threads 1 --nproc 2

Steps, each in its own child process (peak RSS = that process tree's largest resident set; CPU
seconds = its user + system time, less inflated than wall time on a loaded machine):
  1. generate: the synthetic Korean log of ``--users`` users, written block by block (``--parts``
     Hive-style partitions ``log/part=NNN/data.parquet``, users renamed per block so they stay unique),
     the label CSVs, the interactions and tasks.toml; skipped with ``--reuse``;
  2. prepare: ``querylearn prepare files --queries log/ --engine duckdb --memory-limit ...``;
  3. train: ``querylearn train-sequence --tasks T1 --epochs 1`` with ``next_query.sampled_softmax = K``
     (``--nproc N`` runs it data-parallel), reporting the epoch's training seconds (metrics.json) and
     samples/s, and the whole command's wall time (validation and the chunked test ranking included);
     or, with ``--train-steps N``, N steps of that epoch in one process the way train-sequence sets it up
     (dataset memory-mapped, every task loaded, full-vocabulary model) plus ``--eval-rows`` ranked
     validation and test rows, and the epoch and ranking extrapolated from them (the rule is in the JSON).

Results are printed and written to bench/results/scale_<users>.json (or ``--result NAME``), with the
load average at the end of each measured step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# a child that runs a command and prints its process tree's peak RSS (KiB on Linux) on its last line
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=sys.stdout).returncode\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(r.ru_maxrss, r.ru_utime + r.ru_stime)\n"
    "sys.exit(code)\n"
)


def measured(cmd: list[str], capture: bool = False) -> tuple[float, float, str, float]:
    """Run ``cmd`` -> (wall seconds, peak RSS MiB of its largest process, its stdout if ``capture``,
    CPU seconds of the process tree: user + system, a figure that a loaded machine inflates less)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], stdout=subprocess.PIPE, check=True,
                          stderr=None, text=True)
    seconds = time.perf_counter() - t0
    lines = done.stdout.strip().splitlines()
    rss_kib, cpu = lines[-1].split()
    return seconds, int(rss_kib) / 1024, "\n".join(lines[:-1]) if capture else "", float(cpu)


def _load() -> list[float]:
    """The machine's 1/5/15-minute load averages now (the numbers above were taken under this load)."""
    return [round(x, 2) for x in os.getloadavg()]


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


def train_steps_child(data: Path, run_dir: Path, steps: int, eval_rows: int, sets: list[str]) -> None:
    """One T1 fit of ``steps`` batches in this process, the way train-sequence runs it (the dataset
    memory-mapped, every task's arrays and the full-vocabulary model loaded), then the chunked test
    ranking of ``eval_rows`` rows. Prints one JSON line: seconds per step and per ranked row."""
    import dataclasses

    import numpy as np
    import torch

    from querylearn.config_loader import load_config, parse_sets
    from querylearn.continual import run as runner
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.evaluation import row_ranks
    from querylearn.continual.strategies import build_strategy
    from querylearn.data.dataset import load_dataset

    config = load_config(TrainConfig, None, {**parse_sets(sets), "tasks": ["T1"], "t1.max_epochs": 1})
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    ds = load_dataset(data, mmap=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    run = runner._Run(run_dir, config, ds, ["T1"], None, None)
    t1 = run.tasks["T1"]
    full = {k: t1.n(k) for k in ("train", "valid", "test")}
    rows = {"train": steps * config.t1.batch_size, "valid": eval_rows, "test": eval_rows}
    run.tasks["T1"] = dataclasses.replace(
        t1,
        users={k: v[: rows[k]] for k, v in t1.users.items()},
        labels={k: v[: rows[k]] for k, v in t1.labels.items()},
    )
    model, fit = run.learn_task(build_strategy("finetune", config), 0, None, seed_offset=0,
                                log_path=run_dir / "steps.jsonl", label="T1")
    t0 = time.perf_counter()
    ranks = row_ranks(model, run.tasks["T1"], "test", run.sequences, config=config,
                      batch_size=config.t1.eval_batch_size)
    rank_seconds = time.perf_counter() - t0
    print(json.dumps({"steps": steps, "train_seconds": fit.seconds_per_epoch, "rows": full,
                      "ranked_rows": int(len(ranks)), "rank_seconds": rank_seconds,
                      "mrr5_on_ranked_rows": float(np.where(ranks < 5, 1.0 / (ranks + 1), 0.0).mean())}))


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
    ap.add_argument("--result", default=None, help="results file name under bench/results "
                    "(default scale_<users>.json)")
    ap.add_argument("--train-steps", type=int, default=0,
                    help="measure this many T1 steps (and --eval-rows ranked test rows) in one process "
                         "and extrapolate the epoch, instead of running the whole epoch (0)")
    ap.add_argument("--eval-rows", type=int, default=4096, help="with --train-steps: test rows ranked")
    ap.add_argument("--child-steps", nargs=3, metavar=("DATA", "RUN", "STEPS"), help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], dest="sets",
                    help="extra train-sequence config override key=value, e.g. model.channels=64; repeatable")
    args = ap.parse_args()
    sets = [f"next_query.sampled_softmax={args.sampled_softmax}", f"threads={args.threads}",
            f"t1.batch_size={args.batch_size}", *args.sets]
    if args.child_steps:
        data, run, steps = args.child_steps
        train_steps_child(Path(data), Path(run), int(steps), args.eval_rows, sets)
        return

    work = args.work
    result: dict = {"users": args.users}
    if not args.skip_prepare:
        result.update(engine=args.engine, memory_limit=args.memory_limit)
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
        seconds, rss, _, cpu = measured(cmd)
        result.update(prepare_seconds=round(seconds, 1), prepare_cpu_seconds=round(cpu, 1),
                      prepare_peak_rss_mib=round(rss), prepare_load_average=_load())
    manifest = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    result.update(log_rows=manifest["summary"]["log_rows"], dataset_users=manifest["n_users"],
                  vocab_size=manifest["vocab_size"])
    if args.train_steps:
        import shutil

        run = work / "run_steps"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child-steps", str(data), str(run), str(args.train_steps),
               "--eval-rows", str(args.eval_rows), "--sampled-softmax", str(args.sampled_softmax),
               "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               *[a for item in args.sets for a in ("--set", item)]]
        seconds, rss, out, cpu = measured(cmd, capture=True)
        child = json.loads(out.strip().splitlines()[-1])
        per_step = child["train_seconds"] / args.train_steps
        per_row = child["rank_seconds"] / max(child["ranked_rows"], 1)
        epoch_steps = -(-child["rows"]["train"] // args.batch_size)
        result.update(
            nproc=1, threads=args.threads, sampled_softmax=args.sampled_softmax, batch_size=args.batch_size,
            t1_rows=child["rows"], measured_steps=args.train_steps,
            measured_train_seconds=round(child["train_seconds"], 1),
            t1_samples_per_second=round(args.batch_size / per_step),
            t1_epoch_steps=epoch_steps,
            t1_epoch_seconds_extrapolated=round(epoch_steps * per_step),
            measured_ranked_rows=child["ranked_rows"], measured_rank_seconds=round(child["rank_seconds"], 1),
            ranking_seconds_extrapolated={k: round(child["rows"][k] * per_row) for k in ("valid", "test")},
            steps_command_seconds=round(seconds, 1), steps_command_cpu_seconds=round(cpu, 1),
            train_peak_rss_mib=round(rss), train_sets=args.sets, train_load_average=_load(),
            extrapolation="epoch = t1_epoch_steps x (measured_train_seconds / measured_steps); ranking = "
                          "rows x (measured_rank_seconds / measured_ranked_rows)",
        )
    elif not args.skip_train:
        import shutil

        run = work / f"run_nproc{args.nproc}_threads{args.threads}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [*ql, "train-sequence", "--data", str(data), "--out", str(run), "--tasks", "T1",
               "--epochs", "1", "--strategy", "finetune", "--no-progress", "--nproc", str(args.nproc),
               *[a for item in sets for a in ("--set", item)]]
        seconds, rss, _, cpu = measured(cmd)
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        epoch = metrics["seconds_per_epoch"][0]
        t1 = next(t for t in manifest["tasks"] if t["name"] == "T1")
        result.update(
            nproc=args.nproc, threads=args.threads, sampled_softmax=args.sampled_softmax,
            batch_size=args.batch_size, t1_epoch_seconds=round(epoch, 1),
            t1_samples_per_second=round(t1["splits"]["train"] / epoch),
            train_command_seconds=round(seconds, 1), train_command_cpu_seconds=round(cpu, 1),
            train_peak_rss_mib=round(rss), train_load_average=_load(), t1_test_mrr5=metrics["R"][0][0],
            train_sets=args.sets,
        )
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / (args.result or f"scale_{args.users}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
