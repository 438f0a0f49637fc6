"""``experiment order``: the task order reversed (T1 first, then the rest backwards) and one random
permutation of the tasks after T1 (drawn once with ``PERMUTATION_SEED``, the same for every
training seed), against the dataset's order. Per strategy and order: every task's final score
R(T_last, T_i) (mean ± std over seeds), and per task the difference to the default order
(per seed, then mean ± std); ``mean |diff|`` summarises how much the order moves a strategy.
"""

from __future__ import annotations

import numpy as np

from querylearn.data.dataset import load_manifest
from querylearn.errors import ConfigError
from querylearn.experiments.runner import ExperimentContext, RunResult, RunSpec, group, seed_runs
from querylearn.experiments.stats import final_scores, fmt_ms, mean_std

CLAIM = "TERACON's final scores are robust to the task order; CONURE's are not."
DEFAULT_STRATEGIES = ("teracon", "conure")
PERMUTATION_SEED = 12345


def orders(tasks: list[str]) -> dict[str, list[str]]:
    """{"default", "reversed", "permuted"}: T1 stays first (it defines the vocabulary). With two
    tasks after T1 every order is default or reversed, so there is no "permuted"."""
    head, rest = tasks[:1], tasks[1:]
    out = {"default": list(tasks), "reversed": head + rest[::-1]}
    if len(rest) > 2:
        perm = [int(i) for i in np.random.default_rng(PERMUTATION_SEED).permutation(len(rest))]
        if perm in (list(range(len(rest))), list(range(len(rest)))[::-1]):  # says nothing new: rotate it
            perm = perm[1:] + perm[:1]
        out["permuted"] = head + [rest[i] for i in perm]
    return out


def _tasks(ctx: ExperimentContext) -> list[str]:
    return [t["name"] for t in load_manifest(ctx.data)["tasks"]]


def check(ctx: ExperimentContext) -> None:
    if len(_tasks(ctx)) < 3:
        raise ConfigError(f"{ctx.data}: experiment order needs at least 3 tasks (T1 + two to reorder)")


def plan(ctx: ExperimentContext, done: dict[str, RunResult]) -> list[RunSpec]:
    specs = []
    for strategy in ctx.strategies:
        for order_name, order in orders(_tasks(ctx)).items():
            specs += seed_runs(
                ctx,
                f"{strategy}-{order_name}",
                {"strategy": strategy, "order": order_name},
                {"strategy": strategy, "tasks": order},
            )
    return specs


def summarise(ctx: ExperimentContext, done: dict[str, RunResult]) -> dict:
    tasks = _tasks(ctx)
    named = orders(tasks)
    scores: dict = {}
    diffs: dict = {}
    score_rows, diff_rows = [], []
    bars: dict[str, list] = {}
    for strategy in ctx.strategies:
        per_order = {
            o: [final_scores(r.metrics) for r in group(done, strategy=strategy, order=o)] for o in named
        }
        scores[strategy] = {
            o: {t: mean_std(s[t] for s in runs) for t in tasks} for o, runs in per_order.items()
        }
        for o in named:
            means = [np.mean([s[t] for t in tasks]) for s in per_order[o]]
            score_rows.append(
                [strategy, o, *(fmt_ms(scores[strategy][o][t]) for t in tasks), fmt_ms(mean_std(means))]
            )
        diffs[strategy] = {}
        for o in [o for o in named if o != "default"]:
            pairs = list(zip(per_order[o], per_order["default"], strict=True))  # same seeds, same order
            per_task = {t: mean_std(a[t] - b[t] for a, b in pairs) for t in tasks}
            abs_mean = mean_std(np.mean([abs(a[t] - b[t]) for t in tasks]) for a, b in pairs)
            diffs[strategy][o] = {"per_task": per_task, "mean_abs": abs_mean}
            diff_rows.append([strategy, o, *(fmt_ms(per_task[t], "+.4f") for t in tasks), fmt_ms(abs_mean)])
            bars[f"{strategy} {o}"] = [per_task[t] for t in tasks]
    return {
        "summary": {"orders": named, "final_scores": scores, "difference": diffs},
        "tables": [
            {
                "title": "Final scores R(T_last, T_i) per order (mean ± std over seeds)",
                "header": ["strategy", "order", *tasks, "mean"],
                "rows": score_rows,
            },
            {
                "title": "Difference to the default order, per task (order − default; mean ± std over seeds)",
                "note": "mean |diff|: the mean over tasks of the absolute per-task difference, per seed.",
                "header": ["strategy", "order", *tasks, "mean |diff|"],
                "rows": diff_rows,
            },
        ],
        "figures": [
            {
                "file": "order_difference.png",
                "kind": "bars",
                "title": "final score: order − default",
                "ylabel": "difference",
                "groups": tasks,
                "series": bars,
            },
        ],
    }
