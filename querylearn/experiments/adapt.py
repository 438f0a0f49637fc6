"""``experiment adapt``: how fast a new task is learnt from an existing representation.

The base tasks are the first three (fewer on a shorter dataset: all but the last); the new task is
the next one. Per strategy and seed three runs learn the new task:

- ``after-base``: after T1..T3 (the representation the claim is about);
- ``after-T1``: after T1 only (when the base has more than one task);
- ``scratch``: alone, from a fresh model.

The new task is trained with the same optimisation settings in all three (the ``later`` phase:
``t1``/``t2`` are set to it where the new task sits first or second), so the curves differ only by
where they start. Reported: the new task's validation score per epoch (``logs/NN-TASK.jsonl``;
mean ± std over seeds, a figure per strategy), its first-epoch and best validation score, the
epoch of the best, and its final test score.
"""

from __future__ import annotations

import dataclasses

from querylearn.data.dataset import load_manifest
from querylearn.errors import ConfigError
from querylearn.experiments.runner import ExperimentContext, RunResult, RunSpec, group, seed_runs
from querylearn.experiments.stats import final_scores, fmt_ms, mean_curve, mean_std, read_log, valid_curve

CLAIM = "A representation trained on T1..T3 gives a new task a higher initial score and faster convergence."
DEFAULT_STRATEGIES = ("teracon", "finetune")
N_BASE = 3


def split_tasks(tasks: list[str]) -> tuple[list[str], str]:
    """(base tasks, new task): the first min(3, n - 1) tasks and the one after them."""
    n_base = min(N_BASE, len(tasks) - 1)
    return tasks[:n_base], tasks[n_base]


def variants(tasks: list[str]) -> dict[str, list[str]]:
    base, new = split_tasks(tasks)
    out = {"after-base": base + [new]}
    if len(base) > 1:
        out["after-T1"] = [base[0], new]
    out["scratch"] = [new]
    return out


def _tasks(ctx: ExperimentContext) -> list[str]:
    return [t["name"] for t in load_manifest(ctx.data)["tasks"]]


def check(ctx: ExperimentContext) -> None:
    if len(_tasks(ctx)) < 2:
        raise ConfigError(f"{ctx.data}: experiment adapt needs at least 2 tasks (a base task and a new one)")


def _same_phase(ctx: ExperimentContext, position: int) -> dict:
    """Overrides that give the phase at ``position`` (0 = t1, 1 = t2) the ``later`` phase's settings."""
    if position >= 2:
        return {}
    later = dataclasses.asdict(ctx.base_config().later)
    section = "t1" if position == 0 else "t2"
    return {f"{section}.{k}": v for k, v in later.items()}


def plan(ctx: ExperimentContext, done: dict[str, RunResult]) -> list[RunSpec]:
    specs = []
    for strategy in ctx.strategies:
        for name, order in variants(_tasks(ctx)).items():
            overrides = {"strategy": strategy, "tasks": order, **_same_phase(ctx, len(order) - 1)}
            specs += seed_runs(ctx, f"{strategy}-{name}", {"strategy": strategy, "variant": name}, overrides)
    return specs


def summarise(ctx: ExperimentContext, done: dict[str, RunResult]) -> dict:
    tasks = _tasks(ctx)
    _, new = split_tasks(tasks)
    metric = next(t["metric"] for t in load_manifest(ctx.data)["tasks"] if t["name"] == new)
    summary: dict = {}
    rows = []
    figures = []
    for strategy in ctx.strategies:
        summary[strategy] = {}
        series = {}
        for name, order in variants(tasks).items():
            runs = group(done, strategy=strategy, variant=name)
            position = len(order) - 1
            curves = [valid_curve(read_log(r.run_dir, position, new), new, metric) for r in runs]
            entry = {
                "tasks": order,
                "curve": mean_curve(curves),
                "curves": curves,
                "first_epoch": mean_std(c[0] if c else None for c in curves),
                "best_valid": mean_std(max((v for v in c if v is not None), default=None) for c in curves),
                "best_epoch": mean_std(r.metrics["best_epoch"][position] for r in runs),
                "test": mean_std(final_scores(r.metrics)[new] for r in runs),
            }
            summary[strategy][name] = entry
            series[name] = entry["curve"]
            rows.append(
                [
                    strategy,
                    name,
                    " → ".join(order),
                    fmt_ms(entry["first_epoch"]),
                    fmt_ms(entry["best_valid"]),
                    fmt_ms(entry["best_epoch"], ".1f"),
                    fmt_ms(entry["test"]),
                ]
            )
        figures.append(
            {
                "file": f"adapt_curves_{strategy}.png",
                "kind": "curves",
                "title": f"{new} validation {metric} per epoch ({strategy})",
                "xlabel": "epoch",
                "ylabel": f"valid {metric}",
                "series": series,
            }
        )
    return {
        "summary": {"new_task": new, "metric": metric, "variants": variants(tasks), "strategies": summary},
        "tables": [
            {
                "title": f"Learning the new task {new} ({metric}; mean ± std over seeds)",
                "note": "first epoch / best: validation score; best epoch: the epoch early stopping kept; "
                "test: the final test score.",
                "header": ["strategy", "variant", "tasks", "first epoch", "best", "best epoch", "test"],
                "rows": rows,
            },
        ],
        "figures": figures,
    }
