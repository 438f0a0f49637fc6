"""``experiment noise``: a noisy task inserted in the middle of the sequence.

The noisy task is the dataset's ``TN`` (``prepare synthetic --noisy-task``) when it has one;
otherwise :func:`write_noisy_copy` writes ``OUT/data-noisy``, the dataset plus ``NOISE``, a copy of
one label task (the first classify task, else the first multi-target one) whose labels are
shuffled across its examples: every user keeps his split, the label distribution is unchanged and
the labels carry no information about the user. Per strategy and seed two runs on the same dataset:
``clean`` (the tasks without the noisy one) and ``noisy`` (the noisy task after the middle task).
Reported: each task's drop (clean − noisy) in % of its clean score, as the seed study does, and
the noisy task's own score next to its chance level (the score of ranking its labels by their
training frequency, which uses nothing of the user).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from querylearn.data.dataset import TaskArrays, load_dataset, load_manifest, write_dataset
from querylearn.errors import ConfigError
from querylearn.experiments.runner import ExperimentContext, RunResult, RunSpec, group, seed_runs
from querylearn.experiments.stats import final_scores, fmt_ms, mean_std
from querylearn.metrics import ranking_metrics

CLAIM = "The noisy task hurts TERACON least (smallest drop of the other tasks' scores)."
DEFAULT_STRATEGIES = ("teracon", "conure", "finetune")
SYNTHETIC_NOISY_TASK = "TN"
NOISY_TASK = "NOISE"
SHUFFLE_SEED = 0


def write_noisy_copy(
    data: str | Path, out: str | Path, *, source_task: str | None = None, seed: int = SHUFFLE_SEED
) -> tuple[str, str]:
    """Write ``data`` plus the label-shuffled task ``NOISE`` to ``out``; returns (noisy, source) names.

    ``source_task`` default: the first classify task, else the first multi-target task.
    """
    ds = load_dataset(data)
    if NOISY_TASK in ds.task_names:
        raise ConfigError(f"{data}: already has a task named {NOISY_TASK}; it cannot be added again")
    label_tasks = [t for t in ds.tasks if t.kind == "classify"] + [
        t for t in ds.tasks if t.kind == "multi_target"
    ]
    if source_task is None:
        if not label_tasks:
            raise ConfigError(f"{data}: no classify or multi_target task to make a noisy copy of")
        src = label_tasks[0]
    else:
        src = ds.task(source_task)
    rng = np.random.default_rng(seed)
    noisy = TaskArrays(
        NOISY_TASK,
        src.kind,
        src.metric,
        src.user_index.copy(),
        src.label[rng.permutation(len(src.label))],
        src.split.copy(),
        src.n_labels,
        list(src.label_names),
        list(src.label_counts),
    )
    manifest = ds.manifest
    write_dataset(
        out,
        source=manifest["source"],
        synthetic=manifest["synthetic"],
        vocab=ds.vocab,
        user_ids=ds.user_ids,
        sequences=np.asarray(ds.sequences),
        user_split=ds.user_split,
        tasks=[*ds.tasks, noisy],
        interactions=ds.interactions,
        split_info=manifest.get("split"),
        summary=manifest.get("summary"),
        extra={"noisy_copy": {"from": str(Path(data).resolve()), "task": src.name, "seed": seed}},
    )
    return NOISY_TASK, src.name


def chance_score(data: str | Path, task: str) -> float | None:
    """The task's test score when its labels are ranked by training frequency (no user input)."""
    ds = load_dataset(data)
    t = ds.task(task)
    train, test = t.label[t.rows("train")], t.label[t.rows("test")]
    if len(test) == 0:
        return None
    counts = np.bincount(train, minlength=t.n_labels)
    order = np.lexsort((np.arange(t.n_labels), -counts))  # most frequent first, ties by label id
    position = np.empty(t.n_labels, dtype=np.int64)
    position[order] = np.arange(t.n_labels)
    ranks = position[test]  # 0-based rank of each test label in that one fixed ranking
    return ranking_metrics(ranks, (5, 20))[t.metric]


def _setup(ctx: ExperimentContext) -> tuple[Path, str, str | None]:
    """(dataset dir, noisy task, the task it copies or None for TN); writes the copy once."""
    names = [t["name"] for t in load_manifest(ctx.data)["tasks"]]
    if SYNTHETIC_NOISY_TASK in names:
        return ctx.data, SYNTHETIC_NOISY_TASK, None
    copy_dir = ctx.out / "data-noisy"
    if not (copy_dir / "dataset.json").is_file():
        write_noisy_copy(ctx.data, copy_dir)
    manifest = load_manifest(copy_dir)
    return copy_dir, NOISY_TASK, manifest["noisy_copy"]["task"]


def orders(names: list[str], noisy: str) -> dict[str, list[str]]:
    """clean: the tasks without the noisy one; noisy: the dataset's order when it places the noisy
    task inside the sequence (synthetic TN comes after T3), else it inserted after the middle task."""
    clean = [n for n in names if n != noisy]
    if 0 < names.index(noisy) < len(names) - 1:
        return {"clean": clean, "noisy": list(names)}
    at = (len(clean) + 1) // 2
    return {"clean": clean, "noisy": clean[:at] + [noisy] + clean[at:]}


def check(ctx: ExperimentContext) -> None:
    names = [t["name"] for t in load_manifest(ctx.data)["tasks"]]
    if len([n for n in names if n != SYNTHETIC_NOISY_TASK]) < 2:
        raise ConfigError(f"{ctx.data}: experiment noise needs at least 2 tasks besides the noisy one")


def plan(ctx: ExperimentContext, done: dict[str, RunResult]) -> list[RunSpec]:
    data, noisy, _ = _setup(ctx)
    names = [t["name"] for t in load_manifest(data)["tasks"]]
    specs = []
    for strategy in ctx.strategies:
        for variant, order in orders(names, noisy).items():
            specs += seed_runs(
                ctx,
                f"{strategy}-{variant}",
                {"strategy": strategy, "variant": variant},
                {"strategy": strategy, "tasks": order},
                data=str(data),
            )
    return specs


def summarise(ctx: ExperimentContext, done: dict[str, RunResult]) -> dict:
    data, noisy, source = _setup(ctx)
    names = [t["name"] for t in load_manifest(data)["tasks"]]
    clean_tasks = orders(names, noisy)["clean"]
    chance = chance_score(data, noisy)
    drops: dict = {}
    own: dict = {}
    rows, own_rows = [], []
    bars: dict[str, list] = {}
    for strategy in ctx.strategies:
        clean = [final_scores(r.metrics) for r in group(done, strategy=strategy, variant="clean")]
        noisy_runs = group(done, strategy=strategy, variant="noisy")
        with_noise = [final_scores(r.metrics) for r in noisy_runs]
        per_task = {}
        for t in clean_tasks:
            pct = [
                100.0 * (c[t] - n[t]) / c[t] if c[t] else None for c, n in zip(clean, with_noise, strict=True)
            ]
            per_task[t] = {
                "clean": mean_std(c[t] for c in clean),
                "noisy": mean_std(n[t] for n in with_noise),
                "drop_pct": mean_std(pct),
            }
        mean_drop = mean_std(
            np.mean([100.0 * (c[t] - n[t]) / c[t] for t in clean_tasks if c[t]])
            for c, n in zip(clean, with_noise, strict=True)
        )
        drops[strategy] = {"per_task": per_task, "mean_drop_pct": mean_drop}
        rows.append(
            [
                strategy,
                *(fmt_ms(per_task[t]["drop_pct"], "+.1f") for t in clean_tasks),
                fmt_ms(mean_drop, "+.1f"),
            ]
        )
        bars[strategy] = [per_task[t]["drop_pct"] for t in clean_tasks]
        own[strategy] = mean_std(s[noisy] for s in with_noise)
        own_rows.append([strategy, fmt_ms(own[strategy]), "" if chance is None else f"{chance:.4f}"])
    metric = next(t["metric"] for t in load_manifest(data)["tasks"] if t["name"] == noisy)
    return {
        "summary": {
            "noisy_task": noisy,
            "copied_from": source,
            "data": str(Path(data).resolve()),
            "orders": orders(names, noisy),
            "metric": metric,
            "chance": chance,
            "drop": drops,
            "noisy_task_score": own,
        },
        "tables": [
            {
                "title": "Drop of each task's final score with the noisy task, in % of its score without it "
                "(mean ± std over seeds; positive = the noisy task hurt)",
                "header": ["strategy", *clean_tasks, "mean"],
                "rows": rows,
            },
            {
                "title": f"The noisy task's own final score ({metric}) and its chance level",
                "note": "chance: its labels ranked by training frequency, without looking at the user.",
                "header": ["strategy", f"{noisy} score", "chance"],
                "rows": own_rows,
            },
        ],
        "figures": [
            {
                "file": "noise_drop.png",
                "kind": "bars",
                "title": f"drop with the noisy task {noisy} (%)",
                "ylabel": "drop (% of clean score)",
                "groups": clean_tasks,
                "series": bars,
            },
        ],
    }
