"""Benchmark matrix for train-sequence: strategies x seeds on one dataset -> JSON + Markdown table.

Every (strategy, seed) run calls ``querylearn.continual.loop.train_sequence`` in its own
subprocess (so ``torch.set_num_threads`` = ``--threads`` holds per run); at most ``--jobs`` run at
once. Run directories go under ``--runs-root`` (default $TMPDIR/querylearn-bench-runs/<out name>), never
into the repository. A run whose ``metrics.json`` already covers every task with the same resolved
config is reused; an interrupted one is continued with ``resume`` (same metrics as uninterrupted).

Usage (MovieLens-100K, reduced CPU settings; see docs/benchmarks-train.md)::

    querylearn prepare movielens-100k --path /work/shared/data/movielens-100k --out /work/scratch/ml100k_bench
    nice -n 10 python bench/bench_sequence.py --data /work/scratch/ml100k_bench \\
        --strategies teracon,conure,hat,finetune,single,multitask --seeds 0,1,2 --jobs 2 \\
        --out bench/results/sequence_ml100k --set model.channels=64 --set 'model.dilations=[1,4,1,4]' ...

(the full list of --set overrides used for the committed tables is in docs/benchmarks-train.md).

Writes ``OUT.json`` (kind ``bench-sequence``: the settings, every run's metrics.json, wall time,
and the summary) and ``OUT.md`` (the table). Table columns, per strategy, mean ± std (sample std,
ddof = 1) over the seeds that finished:
  R(T_last, T_i): headline test metric of task i after the last task (mrr@5 or accuracy);
  mean: mean over tasks of R(T_last, T_i) (per seed, then mean ± std over seeds);
  FWT: mean over i >= 2 of R[i][i] - R_single[i][i], where R_single[i][i] is the ``single``
       strategy's (SinMo: a fresh model trained on task i alone) score averaged over its seeds;
       the same reference serves every strategy (docs/algorithms.md#bwt-and-fwt);
  BWT: mean over i < last of R[last][i] - R[i][i] (per seed), as metrics.json["bwt"]["mean"];
  s/epoch: training seconds per epoch (validation excluded), mean over the tasks of the run.

Fair-comparison protocol (docs/benchmarks-train.md, "Protocol"): every strategy gets the same
overrides (so the same per-fit epoch cap, patience and selection metric per task); the table
states each strategy's epoch budget per task (CONURE fits twice per task, train and retrain, each
up to the cap); a run whose best epoch equals its cap was still improving and is listed under
"capped" (raise the cap and re-run: its number is not an early-stopped result); the no-model
references (popularity / majority class per task, and for T1 the recent-distinct, recency-frequency
and most-popular rankers of bench/t1_heuristics.py, i.e. querylearn.heuristics) are rows of the same table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# worker: one run in its own process
# ---------------------------------------------------------------------------------------------
def worker(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_num_interop_threads(1)
    from querylearn.config_loader import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.loop import train_sequence

    run_dir = Path(spec["run_dir"])
    t0 = time.perf_counter()
    if (run_dir / "run.json").exists():
        metrics = train_sequence(resume=run_dir)  # continue an interrupted run (stored config)
    else:
        cfg = load_config(TrainConfig, spec.get("config_file"), spec["overrides"])
        metrics = train_sequence(spec["data"], run_dir, config=cfg)
    wall = time.perf_counter() - t0
    (run_dir / "bench_wall.json").write_text(
        json.dumps({"wall_seconds": wall, "threads": torch.get_num_threads()}), encoding="utf-8"
    )
    print(f"done {metrics['strategy']} seed {metrics['seed']} in {wall:.1f}s", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# no-model reference: popularity / majority class
# ---------------------------------------------------------------------------------------------
def popularity_reference(data: Path, tasks: list[str]) -> dict:
    """Test headline metric of ranking every label by its training frequency (no model).

    classify: the majority class (accuracy); multi_target: the most frequent training targets;
    next_query: query frequency over the training users' sequences at the positions the T1 loss
    predicts (1..L-1, padding never ranked). Ties are broken by label id (lower first), so every
    candidate has a distinct score and ranks follow querylearn.metrics (strictly higher scores).
    Returns {task: {"metric": name, "value": float, **all ranking metrics}}.
    """
    import numpy as np

    from querylearn.data.dataset import load_dataset
    from querylearn.data.vocab import PAD_ID
    from querylearn.metrics import ranking_metrics

    ds = load_dataset(data)
    out = {}
    for name in tasks:
        t = ds.task(name)
        train, test = t.rows("train"), t.rows("test")
        if t.kind == "next_query":
            n = len(ds.vocab)
            tokens = ds.sequences[np.unique(t.user_index[train])][:, 1:].reshape(-1)
            counts = np.bincount(tokens[tokens != PAD_ID], minlength=n).astype(np.float64)
        else:
            n = int(t.n_labels)
            counts = np.bincount(t.label[train], minlength=n).astype(np.float64)
        score = counts - np.arange(n) / (n + 1.0)  # [n] distinct scores, frequency first
        if t.kind == "next_query":
            score[PAD_ID] = -np.inf
        target = t.label[test]
        ranks = (score[None, :] > score[target][:, None]).sum(axis=1)  # [N_test]
        m = ranking_metrics(ranks, (5, 20))
        out[name] = {"metric": t.metric, "value": m[t.metric], **m}
    return out


# ---------------------------------------------------------------------------------------------
# statistics and table
# ---------------------------------------------------------------------------------------------
def mean_std(values: list[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample std (ddof = 1; 0.0 for one value) over the non-None values, and their count."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return None, None, 0
    m = statistics.fmean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return m, s, len(vals)


def summarise(runs: list[dict], strategies: list[str]) -> dict:
    """Per strategy: mean ± std over seeds of R(T_last, T_i), their mean, FWT vs single, BWT, s/epoch.

    ``runs``: [{"strategy", "seed", "metrics"}] with finished metrics.json dicts (R rows complete).
    FWT_i = R[i][i] - mean over the single strategy's seeds of its R[i][i] (i >= 1, 0-based),
    averaged over i per seed; None when no single run finished.
    """
    tasks = runs[0]["metrics"]["tasks"] if runs else []
    T = len(tasks)
    single_diag = None
    single_runs = [r for r in runs if r["strategy"] == "single"]
    if single_runs:
        single_diag = [statistics.fmean(r["metrics"]["R"][i][i] for r in single_runs) for i in range(T)]
    out: dict = {
        "tasks": tasks,
        "metric": runs[0]["metrics"]["metric"] if runs else [],
        "single_reference": single_diag,
        "strategies": {},
    }
    for name in strategies:
        rs = [r for r in runs if r["strategy"] == name]
        if not rs:
            continue
        last = [r["metrics"]["R"][T - 1] for r in rs]
        per_task = [mean_std([row[i] for row in last]) for i in range(T)]
        avg = mean_std([statistics.fmean(row) for row in last])
        bwt = mean_std([r["metrics"]["bwt"]["mean"] for r in rs])
        fwt_seed = None
        if single_diag is not None and T > 1:
            fwt_seed = [
                statistics.fmean(r["metrics"]["R"][i][i] - single_diag[i] for i in range(1, T)) for r in rs
            ]
        fwt = mean_std(fwt_seed) if fwt_seed is not None else (None, None, 0)
        spe = mean_std([statistics.fmean(r["metrics"]["seconds_per_epoch"]) for r in rs])
        bwt_task = [mean_std([r["metrics"]["bwt"]["per_task"][i] for r in rs]) for i in range(T - 1)]
        diag = [mean_std([r["metrics"]["R"][i][i] for r in rs]) for i in range(T)]
        spe_task = [mean_std([r["metrics"]["seconds_per_epoch"][i] for r in rs])[0] for i in range(T)]
        epochs = [mean_std([r["metrics"]["epochs"][i] for r in rs])[0] for i in range(T)]
        out["strategies"][name] = {
            "seeds": sorted(r["seed"] for r in rs),
            "R_last": [{"mean": m, "std": s, "n": n} for m, s, n in per_task],
            "R_last_mean": {"mean": avg[0], "std": avg[1], "n": avg[2]},
            "fwt_mean": {"mean": fwt[0], "std": fwt[1], "n": fwt[2]},
            "fwt_per_seed": fwt_seed,
            "R_diag": [{"mean": m, "std": s, "n": n} for m, s, n in diag],
            "bwt_per_task": [{"mean": m, "std": s, "n": n} for m, s, n in bwt_task],
            "bwt_mean": {"mean": bwt[0], "std": bwt[1], "n": bwt[2]},
            "seconds_per_epoch": {"mean": spe[0], "std": spe[1], "n": spe[2]},
            "seconds_per_epoch_per_task": spe_task,
            "epochs_per_task": epochs,
            "wall_seconds": [r.get("wall_seconds") for r in rs],
        }
    return out


def _fmt(ms: dict | None, digits: int = 4) -> str:
    if ms is None or ms["mean"] is None:
        return "–"
    if ms.get("n", 2) < 2:
        return f"{ms['mean']:.{digits}f}"  # one seed: no spread to report
    return f"{ms['mean']:.{digits}f} ± {ms['std']:.{digits}f}"


def markdown(
    summary: dict,
    title: str,
    reference: dict | None = None,
    extra_rows: list[list[str]] | None = None,
    protocol: list[str] | None = None,
) -> str:
    tasks, metric = summary["tasks"], summary["metric"]
    head = ["strategy", "seeds"] + [f"{t} ({m})" for t, m in zip(tasks, metric, strict=True)]
    head += ["mean", "FWT", "BWT", "s/epoch"]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary["strategies"].items():
        cells = [name, str(len(s["seeds"]))] + [_fmt(x) for x in s["R_last"]]
        fwt = "0 (reference)" if name == "single" else _fmt(s["fwt_mean"])
        cells += [_fmt(s["R_last_mean"]), fwt, _fmt(s["bwt_mean"]), _fmt(s["seconds_per_epoch"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    if reference:
        cells = ["popularity / majority (no model)", "–"] + [f"{reference[t]['value']:.4f}" for t in tasks]
        mean = statistics.fmean(reference[t]["value"] for t in tasks)
        cells += [f"{mean:.4f}", "–", "–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    for cells in extra_rows or []:
        lines.append("| " + " | ".join(cells) + " |")
    lines += protocol or []
    lines.append("")
    lines.append(
        "R(T_last, T_i): test score of task i after the last task (mean ± sample std over seeds; "
        "a bare number = one seed). "
        "FWT = mean over i ≥ 2 of R[i][i] − R̂_i with R̂_i = the `single` strategy's R[i][i] averaged "
        "over its seeds (the same reference for every strategy). BWT = mean over i < last of "
        "R[last][i] − R[i][i]. s/epoch: training seconds per epoch (validation excluded), mean over tasks."
    )
    ref = summary.get("single_reference")
    if ref is not None:
        lines.append("")
        lines.append(
            "Single-model reference R̂_i: "
            + ", ".join(f"{t} {v:.4f}" for t, v in zip(tasks, ref, strict=True))
        )
    lines += ["", "R(T_i, T_i) (right after learning task i) and BWT_i = R(T_last, T_i) − R(T_i, T_i):", ""]
    lines.append(
        "| strategy | "
        + " | ".join(f"R({t},{t})" for t in tasks)
        + " | "
        + " | ".join(f"BWT {t}" for t in tasks[:-1])
        + " |"
    )
    lines.append("|" + "---|" * (2 * len(tasks)))
    for n, s in summary["strategies"].items():
        lines.append(
            f"| {n} | "
            + " | ".join(_fmt(x) for x in s["R_diag"])
            + " | "
            + " | ".join(_fmt(x) for x in s["bwt_per_task"])
            + " |"
        )
    lines += [
        "",
        "Mean epochs trained per task (early stopping; CONURE counts both phases, multitask the joint fit), "
        "training seconds per epoch per task, and wall seconds per run (training + evaluation, "
        f"{summary.get('jobs', '?')} runs at a time):",
        "",
    ]
    lines.append(
        "| strategy | "
        + " | ".join(f"{t} epochs" for t in tasks)
        + " | "
        + " | ".join(f"{t} s/ep" for t in tasks)
        + " | wall s/run |"
    )
    lines.append("|" + "---|" * (2 * len(tasks) + 2))
    for n, s in summary["strategies"].items():
        walls = [w for w in s["wall_seconds"] if w is not None]
        wall = f"{statistics.fmean(walls):.0f}" if walls else "–"
        lines.append(
            f"| {n} | "
            + " | ".join(f"{x:.1f}" for x in s["epochs_per_task"])
            + " | "
            + " | ".join(f"{x:.2f}" for x in s["seconds_per_epoch_per_task"])
            + f" | {wall} |"
        )
    return "\n".join(lines) + "\n"


def mechanism(run_dir: Path) -> dict | None:
    """TERACON's mechanism over one run, from its per-epoch logs (None when the run logs no ρ):

    rho: mean over every epoch of tasks 2..n of ``rho_mean`` (the epoch's mean ρ) averaged over the
    past tasks; rho_later: the same over the epochs after each task's first (a task's first epoch
    starts from rho_init = 0.9 on its first batch); rho_min / rho_max: the smallest and largest
    epoch value; kept: users retained per past task and batch, mean over every epoch;
    mask_std / mask_off: at the last epoch of the last task, mask std across channels and fraction of
    channels below 0.5 (mean over layers), mean over tasks.
    """
    rhos, later, kept, last = [], [], [], None
    for log in sorted((Path(run_dir) / "logs").glob("*.jsonl")):
        for line in log.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if rec.get("rho_mean"):
                rhos.append(statistics.fmean(rec["rho_mean"].values()))
                if rec.get("epoch", 1) > 1:
                    later.append(rhos[-1])
                kept.append(statistics.fmean(rec["retained_per_batch"].values()))
            if "mask_std" in rec:
                last = rec
    if not rhos:
        return None
    out = {"rho": statistics.fmean(rhos), "rho_later": statistics.fmean(later) if later else None,
           "rho_min": min(rhos), "rho_max": max(rhos), "kept": statistics.fmean(kept)}  # fmt: skip
    if last is not None:
        out["mask_std"] = statistics.fmean(last["mask_std"].values())
        out["mask_off"] = statistics.fmean(statistics.fmean(v) for v in last["mask_off"].values())
    return out


def mechanism_lines(runs: list[dict]) -> list[str]:
    """Markdown table of :func:`mechanism` per strategy (mean ± std over seeds); [] when no run logs ρ."""
    per: dict[str, list[dict]] = {}
    for r in runs:
        m = mechanism(Path(r["run_dir"]))
        if m is not None:
            per.setdefault(r["strategy"], []).append(m)
    if not per:
        return []
    keys = ["rho", "rho_later", "rho_min", "rho_max", "kept", "mask_std", "mask_off"]
    lines = [
        "",
        "Relation-aware sampling over training (tasks 2..n, every epoch; ρ: sampling ratio of a past "
        "task's users, mean over past tasks; after 1st: the epochs after each task's first, whose first "
        "batch starts at rho_init = 0.9; kept: users retained per past task and batch) and the masks "
        "after the last task (std across channels, fraction of channels below 0.5; mean over tasks and "
        "layers):",
        "",
        "| strategy | seeds | mean ρ | mean ρ after 1st | min ρ | max ρ | kept / batch | mask std "
        "| channels off |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ms in per.items():
        cells = [name, str(len(ms))]
        for k in keys:
            ms_k = mean_std([m.get(k) for m in ms])
            cells.append(_fmt({"mean": ms_k[0], "std": ms_k[1], "n": ms_k[2]}, 4))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def budget(resolved: dict, n_tasks: int, phases: int) -> list[int]:
    """Epoch budget per task: the phase's max_epochs (after ``task_overrides``) times the fits per
    task (CONURE: 2)."""
    over = resolved.get("task_overrides", {})
    base = ["t1" if i == 0 else "t2" if i == 1 else "later" for i in range(n_tasks)]
    caps = [over.get(str(i + 1), {}).get("max_epochs", resolved[b]["max_epochs"]) for i, b in enumerate(base)]
    return [c * phases for c in caps]


def capped_runs(runs: list[dict]) -> list[str]:
    """'STRATEGY-sSEED TASK (best epoch B = cap C)' for every task whose best epoch equals its cap
    (the last fit's cap; metrics.json's best_epoch is the last phase's best)."""
    out = []
    for r in runs:
        m = r["metrics"]
        caps = budget(r["resolved"], len(m["tasks"]), 1)
        for task, best, cap in zip(m["tasks"], m["best_epoch"], caps, strict=True):
            if best >= cap:
                out.append(f"{r['strategy']}-s{r['seed']} {task} (best epoch {best} = cap {cap})")
    return out


def protocol_lines(summary: dict, resolved: dict, capped: list[str]) -> list[str]:
    """The protocol paragraph under the table: budgets, selection metric, capped runs."""
    tasks = summary["tasks"]
    lines = [
        "",
        "Protocol: the same overrides for every strategy; selection metric "
        f"`{resolved['selection_metric']}`, patience "
        f"{resolved['t1']['patience']}/{resolved['t2']['patience']}/{resolved['later']['patience']} "
        "(T1/T2/later). Epoch budget per task (max epochs per fit × fits per task):",
        "",
    ]
    lines.append("| strategy | " + " | ".join(tasks) + " |")
    lines.append("|" + "---|" * (len(tasks) + 1))
    for name in summary["strategies"]:
        phases = 2 if name == "conure" else 1
        cells = budget(resolved, len(tasks), phases)
        note = " (2 fits: train + retrain)" if phases == 2 else ""
        lines.append(f"| {name}{note} | " + " | ".join(str(c) for c in cells) + " |")
    lines.append("")
    if capped:
        lines.append(
            "**Capped** (best epoch = cap: still improving, raise the cap and re-run): "
            + "; ".join(capped)
            + "."
        )
    else:
        lines.append("No run's best epoch equals its cap (early stopping decided every end).")
    return lines


def heuristic_rows(data: Path, tasks: list[str]) -> list[list[str]]:
    """Table rows of bench/t1_heuristics.py's rankers (T1 column only; '–' elsewhere)."""
    sys.path.insert(0, str(HERE))
    from t1_heuristics import t1_heuristics

    h = t1_heuristics(data)
    if h["task"] not in tasks:
        return []
    rows = []
    for name in ("recent-distinct", "recency-frequency", "most-popular"):
        cells = [f"{name} ({h['task']} only, no model)", "–"]
        cells += [f"{h[name]:.4f}" if t == h["task"] else "–" for t in tasks]
        rows.append(cells + ["–", "–", "–", "–"])
    return rows


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def _finished(run_dir: Path, n_tasks: int) -> dict | None:
    p = run_dir / "metrics.json"
    if not p.is_file():
        return None
    m = json.loads(p.read_text(encoding="utf-8"))
    if len(m["R"]) != n_tasks or any(v is None for v in m["R"][-1]):
        return None
    return m


def same_settings(old: dict | None, new: dict, defaults: dict) -> bool:
    """Whether a stored resolved config ``old`` describes the run ``new`` would start: equal, except
    that a key added to the config after ``old`` was written counts as equal when ``new`` holds its
    default (a run made before the key existed behaved as the default does)."""
    if not isinstance(old, dict):
        return False
    if set(old) - set(new):
        return False
    for key, value in new.items():
        if key not in old:
            if value != defaults.get(key):
                return False
        elif isinstance(value, dict) and isinstance(old[key], dict):
            if not same_settings(old[key], value, defaults.get(key) or {}):
                return False
        elif old[key] != value:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--strategies", default="teracon,conure,hat,finetune,single,multitask")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--seeds-for",
        action="append",
        default=[],
        help="STRATEGY=S1,S2: fewer/other seeds for one strategy (e.g. multitask=0)",
    )
    ap.add_argument("--out", type=Path, required=True, help="output stem: writes OUT.json and OUT.md")
    ap.add_argument("--config", type=Path, help="TOML with TrainConfig keys")
    ap.add_argument("--set", action="append", default=[], help="section.key=value (TOML value), repeatable")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--runs-root", type=Path, default=None)
    ap.add_argument("--title", default=None)
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)

    from querylearn.config_loader import load_config, parse_sets, to_dict
    from querylearn.continual.config import TrainConfig
    from querylearn.data.dataset import load_manifest

    strategies = [s for s in args.strategies.split(",") if s]
    seeds = {s: [int(x) for x in args.seeds.split(",") if x != ""] for s in strategies}
    for item in args.seeds_for:
        name, _, vals = item.partition("=")
        seeds[name] = [int(x) for x in vals.split(",") if x != ""]
    overrides = parse_sets(args.set)
    overrides["threads"] = args.threads
    overrides["device"] = "cpu"
    manifest = load_manifest(args.data)
    n_tasks = len(load_config(TrainConfig, args.config, overrides).tasks) or len(manifest["tasks"])
    runs_root = args.runs_root or Path(tempfile.gettempdir()) / "querylearn-bench-runs" / args.out.name
    runs_root.mkdir(parents=True, exist_ok=True)

    # seed-major order (every strategy's seed 0 first, so an early stop still leaves whole seeds),
    # and within a seed the slowest strategies first (better packing on --jobs workers)
    slow_first = {"multitask": 0, "conure": 1, "teracon": 2, "hat": 3}
    order = sorted(strategies, key=lambda n: (slow_first.get(n, 9), strategies.index(n)))
    all_seeds = sorted({x for n in strategies for x in seeds[n]})
    jobs: list[dict] = []
    for seed in all_seeds:
        for name in order:
            if seed not in seeds[name]:
                continue
            ov = dict(overrides, strategy=name, seed=seed)
            cfg = load_config(TrainConfig, args.config, ov)  # fail early on bad keys
            run_dir = runs_root / f"{name}-s{seed}"
            spec = {
                "data": str(args.data.resolve()),
                "run_dir": str(run_dir),
                "config_file": str(args.config.resolve()) if args.config else None,
                "overrides": ov,
                "threads": args.threads,
                "resolved": to_dict(cfg),
            }
            jobs.append({"strategy": name, "seed": seed, "run_dir": run_dir, "spec": spec})

    pending = []
    for job in jobs:
        m = _finished(job["run_dir"], n_tasks)
        stored = job["run_dir"] / "bench_spec.json"
        if m is not None and stored.is_file():
            old = json.loads(stored.read_text(encoding="utf-8"))
            defaults = to_dict(TrainConfig())
            if same_settings(old.get("resolved"), job["spec"]["resolved"], defaults) and old.get(
                "data"
            ) == job["spec"]["data"]:
                print(f"reuse {job['run_dir']}", flush=True)
                continue
            raise SystemExit(
                f"{job['run_dir']}: holds a run with other settings; remove it or pick another --runs-root"
            )
        pending.append(job)

    t_start = time.perf_counter()
    running: list[tuple[dict, subprocess.Popen, float]] = []
    failed = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            job["run_dir"].mkdir(parents=True, exist_ok=True)
            spec_path = job["run_dir"] / "bench_spec.json"
            spec_path.write_text(json.dumps(job["spec"], indent=1), encoding="utf-8")
            log = open(job["run_dir"] / "bench.log", "a", encoding="utf-8")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--data",
                    str(args.data),
                    "--out",
                    "x",
                    "--worker",
                    str(spec_path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            print(f"start {job['strategy']} seed {job['seed']} -> {job['run_dir']}", flush=True)
            running.append((job, proc, time.perf_counter()))
        time.sleep(2)
        still = []
        for job, proc, t0 in running:
            rc = proc.poll()
            if rc is None:
                still.append((job, proc, t0))
                continue
            took = time.perf_counter() - t0
            if rc != 0:
                failed.append(job)
                print(
                    f"FAILED {job['strategy']} seed {job['seed']} (rc {rc}); see {job['run_dir']}/bench.log",
                    flush=True,
                )
            else:
                print(f"finished {job['strategy']} seed {job['seed']} in {took:.0f}s", flush=True)
        running = still

    runs = []
    for job in jobs:
        m = _finished(job["run_dir"], n_tasks)
        if m is None:
            continue
        wall_p = job["run_dir"] / "bench_wall.json"
        wall = json.loads(wall_p.read_text())["wall_seconds"] if wall_p.is_file() else None
        runs.append(
            {
                "strategy": job["strategy"],
                "seed": job["seed"],
                "run_dir": str(job["run_dir"]),
                "wall_seconds": wall,
                "metrics": m,
                "resolved": job["spec"]["resolved"],
            }
        )
    summary = summarise(runs, strategies)
    summary["jobs"] = args.jobs
    reference = popularity_reference(args.data, summary["tasks"]) if runs else None
    capped = capped_runs(runs)
    for line in capped:
        print(f"CAPPED {line}", flush=True)
    extra = heuristic_rows(args.data, summary["tasks"]) if runs else []
    protocol = protocol_lines(summary, runs[0]["resolved"], capped) if runs else []
    protocol += mechanism_lines(runs)
    title = args.title or f"{manifest.get('source', args.data.name)}: {', '.join(strategies)}"
    import torch

    result = {
        "kind": "bench-sequence",
        "schema_version": 1,
        "data": str(args.data.resolve()),
        "dataset_source": manifest.get("source"),
        "strategies": strategies,
        "seeds": seeds,
        "config_file": str(args.config) if args.config else None,
        "config_file_text": args.config.read_text(encoding="utf-8") if args.config else None,
        "overrides": overrides,
        "jobs": args.jobs,
        "threads_per_run": args.threads,
        "driver_wall_seconds_this_invocation": time.perf_counter() - t_start,
        "failed": [f"{j['strategy']}-s{j['seed']}" for j in failed],
        "platform": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
        "summary": summary,
        "popularity_reference": reference,
        "capped": capped,
        "mechanism": {f"{r['strategy']}-s{r['seed']}": mechanism(Path(r["run_dir"])) for r in runs},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out_json = args.out.with_name(args.out.name + ".json")
    out_md = args.out.with_name(args.out.name + ".md")
    out_json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    out_md.write_text(markdown(summary, title, reference, extra, protocol), encoding="utf-8")
    print(out_md.read_text(encoding="utf-8"))
    print(f"wrote {out_json} and {out_md}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
