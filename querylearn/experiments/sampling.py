"""``experiment sampling``: TERACON's relation-aware user sampling against its controls.

Variants (``--strategies`` picks among them):

- ``teracon``: relation-aware rho (Eq. 14-15);
- ``teracon-rho1``: retention on every user of the batch (rho = 1);
- ``teracon-fixed``: one uniform rate for every past task and batch (``teracon.rho_mode = "fixed"``)
  set to the mean rate the ``teracon`` run of the same seed used, so both retain as many users
  and differ only in *which* past tasks get them (this run starts after that one);
- ``teracon-noretention``: no retention (alpha = 0).

Per variant (mean ± std over seeds): the mean final score R(T_last, ·) and per task, the training
seconds per epoch of the tasks after T1 (where retention runs), the mean sampling rate rho and
the fraction of users retained per past task (``retained_rows`` of the epoch logs / (past tasks x
the task's training examples)).
"""

from __future__ import annotations

import numpy as np

from querylearn.data.dataset import load_manifest
from querylearn.errors import ConfigError
from querylearn.experiments.runner import ExperimentContext, RunResult, RunSpec, group, seed_runs
from querylearn.experiments.stats import final_scores, fmt_ms, mean_std, read_log, retention_stats

CLAIM = "Relation-aware sampling keeps the quality of retention on all users at a fraction of the time."
VARIANTS = {
    "teracon": {"strategy": "teracon"},
    "teracon-rho1": {"strategy": "teracon-rho1"},
    "teracon-fixed": {"strategy": "teracon", "teracon.rho_mode": "fixed"},
    "teracon-noretention": {"strategy": "teracon-noretention"},
}
DEFAULT_STRATEGIES = tuple(VARIANTS)


def check(ctx: ExperimentContext) -> None:
    bad = [s for s in ctx.strategies if s not in VARIANTS]
    if bad:
        raise ConfigError(
            f"experiment sampling: unknown variant '{bad[0]}'; choose among {', '.join(VARIANTS)}"
        )
    if "teracon-fixed" in ctx.strategies and "teracon" not in ctx.strategies:
        raise ConfigError(
            "experiment sampling: teracon-fixed takes its rate from the teracon runs; add teracon"
        )
    if len(load_manifest(ctx.data)["tasks"]) < 2:
        raise ConfigError(f"{ctx.data}: experiment sampling needs at least 2 tasks (retention starts at T2)")


def run_stats(result: RunResult, train_rows: dict[str, int]) -> dict:
    """Per task after T1: {"rho", "retained_fraction", "seconds_per_epoch"}; and their means."""
    m = result.metrics
    per_task = {}
    for p, task in enumerate(m["tasks"]):
        if p == 0:
            continue
        stats = retention_stats(read_log(result.run_dir, p, task), p, train_rows[task])
        per_task[task] = {**stats, "seconds_per_epoch": m["seconds_per_epoch"][p]}
    rhos = [v["rho"] for v in per_task.values() if v["rho"] is not None]
    fractions = [v["retained_fraction"] for v in per_task.values() if v["retained_fraction"] is not None]
    return {
        "per_task": per_task,
        "rho": float(np.mean(rhos)) if rhos else None,
        "retained_fraction": float(np.mean(fractions)) if fractions else None,
        "seconds_per_epoch": float(np.mean([v["seconds_per_epoch"] for v in per_task.values()])),
    }


def _train_rows(ctx: ExperimentContext) -> dict[str, int]:
    return {t["name"]: int(t["splits"]["train"]) for t in load_manifest(ctx.data)["tasks"]}


def plan(ctx: ExperimentContext, done: dict[str, RunResult]) -> list[RunSpec]:
    specs = []
    for variant in ctx.strategies:
        if variant == "teracon-fixed":
            continue
        specs += seed_runs(ctx, variant, {"strategy": variant}, dict(VARIANTS[variant]))
    if "teracon-fixed" in ctx.strategies:
        rows = _train_rows(ctx)
        for seed in ctx.seeds:
            ref = done.get(f"teracon-s{seed}")
            if ref is None:
                continue  # planned once the relation-aware run of this seed has finished
            rate = run_stats(ref, rows)["rho"]
            rate = 1.0 if rate is None else float(min(1.0, max(rate, 1e-6)))
            specs.append(
                RunSpec(
                    f"teracon-fixed-s{seed}",
                    {"strategy": "teracon-fixed", "seed": seed},
                    {**VARIANTS["teracon-fixed"], "teracon.rho_fixed": rate, "seed": seed},
                )
            )
    return specs


def summarise(ctx: ExperimentContext, done: dict[str, RunResult]) -> dict:
    rows_by_task = _train_rows(ctx)
    tasks = [t["name"] for t in load_manifest(ctx.data)["tasks"]]
    summary: dict = {}
    rows = []
    for variant in ctx.strategies:
        runs = group(done, strategy=variant)
        finals = [final_scores(r.metrics) for r in runs]
        stats = [run_stats(r, rows_by_task) for r in runs]
        entry = {
            "score_mean": mean_std(np.mean([f[t] for t in tasks]) for f in finals),
            "score_per_task": {t: mean_std(f[t] for f in finals) for t in tasks},
            "seconds_per_epoch": mean_std(s["seconds_per_epoch"] for s in stats),
            "rho": mean_std(s["rho"] for s in stats),
            "retained_fraction": mean_std(s["retained_fraction"] for s in stats),
            "retained_fraction_per_task": {
                t: mean_std(s["per_task"][t]["retained_fraction"] for s in stats) for t in tasks[1:]
            },
            "runs": [{"seed": r.spec.labels["seed"], **s} for r, s in zip(runs, stats, strict=True)],
        }
        if variant == "teracon-fixed":
            entry["rho_fixed"] = [r.spec.overrides["teracon.rho_fixed"] for r in runs]
        summary[variant] = entry
        rows.append(
            [
                variant,
                fmt_ms(entry["score_mean"]),
                *(fmt_ms(entry["score_per_task"][t]) for t in tasks),
                fmt_ms(entry["seconds_per_epoch"], ".2f"),
                fmt_ms(entry["rho"], ".3f"),
                fmt_ms(entry["retained_fraction"], ".3f"),
            ]
        )
    return {
        "summary": {"variants": summary, "tasks": tasks},
        "tables": [
            {
                "title": "Quality, time and users retained per sampling variant (mean ± std over seeds)",
                "note": "score: R(T_last, T_i); s/epoch, rho and retained: means over the tasks after T1. "
                "retained = rows re-used by retention / (past tasks x the task's training examples).",
                "header": ["variant", "mean score", *tasks, "s/epoch", "rho", "retained"],
                "rows": rows,
            },
        ],
        "figures": [
            {
                "file": f"sampling_{key}.png",
                "kind": "bars",
                "title": title,
                "ylabel": ylabel,
                "groups": list(ctx.strategies),
                "series": {title: [summary[v][key] for v in ctx.strategies]},
            }
            for key, title, ylabel in (
                ("score_mean", "mean final score R(T_last, ·)", "score"),
                ("seconds_per_epoch", "training seconds per epoch (tasks after T1)", "seconds"),
                ("retained_fraction", "fraction of users retained per past task", "fraction"),
            )
        ],
    }
