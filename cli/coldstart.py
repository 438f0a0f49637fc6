"""``querylearn coldstart-eval``: NCF on learnt user representations, warm vs cold users, vs baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.markup import escape

from querylearn.cli.app import app, console, print_table
from querylearn.cli.choices import Baseline, NCFModel, NCFVariant
from querylearn.config_loader import stage_config
from querylearn.errors import QuerylearnError


def _unique_name(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}~{k}", k + 1
    taken.add(out)
    return out


def item_vectors_from_table(emb_dir: Path, dataset) -> np.ndarray:
    """Embed every item text of ``dataset`` with the embed-init table at ``emb_dir``. -> [n_items, E]."""
    from querylearn.embeddings import embed_queries

    if dataset.interactions is None:
        raise QuerylearnError(f"{dataset.path}: the dataset has no interactions/items to initialise")
    texts = list(dataset.interactions.item_texts)
    if len(texts) != dataset.interactions.n_items or not any(texts):
        raise QuerylearnError(
            f"{dataset.path}/items.json: no item texts to embed; --item-init needs item titles "
            "(drop --item-init)"
        )
    return np.asarray(embed_queries(emb_dir, texts).vectors, dtype=np.float32)


@app.command("coldstart-eval")
def coldstart_eval_cli(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (from 'querylearn prepare').")],
    out: Annotated[
        Path, typer.Option("--out", help="Report directory: report.json, report.csv, config.toml.")
    ],
    run: Annotated[
        list[Path] | None,
        typer.Option(
            "--run",
            help="train-sequence run directory; repeat to compare runs (exported via querylearn.export).",
        ),
    ] = None,
    after_task: Annotated[
        list[str] | None,
        typer.Option(
            "--after-task",
            help="Export each --run as its model was after learning this task (trained on T1..TASK "
            "only); repeat to compare (e.g. T4, T7). Default: the last task learnt.",
        ),
    ] = None,
    mask_task: Annotated[
        str | None,
        typer.Option(
            "--mask-task",
            help="Task whose mask the --run exports use; default each checkpoint's last task "
            "(the --after-task itself).",
        ),
    ] = None,
    users_from: Annotated[
        list[Path] | None,
        typer.Option("--users-from", help="UserRepresentations Parquet (user_id, v0..v{D-1}); repeatable."),
    ] = None,
    ncf_model: Annotated[
        NCFModel | None, typer.Option("--ncf-model", help="NCF model (default neumf).")
    ] = None,
    model_alias: Annotated[
        NCFModel | None, typer.Option("--model", hidden=True, help="Old name of --ncf-model.")
    ] = None,
    negatives: Annotated[
        int | None, typer.Option("--negatives", help="Sampled never-interacted candidates per user.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the split, candidates, tie keys and training.")
    ] = None,
    cold_fraction: Annotated[
        float | None,
        typer.Option("--cold-fraction", help="Seeded fraction of otherwise-warm users made cold (0..1)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="NCF training epochs.")] = None,
    variant: Annotated[
        list[NCFVariant] | None,
        typer.Option("--variant", help="User side of NCF; repeatable (default: id and rep)."),
    ] = None,
    baseline: Annotated[
        list[Baseline] | None,
        typer.Option("--baseline", help="Baseline methods; repeatable (default: all four)."),
    ] = None,
    item_init: Annotated[
        Path | None,
        typer.Option(
            "--item-init", help="embed-init table dir: initialise NCF items from their text (embed_queries)."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="CPU threads for torch and implicit ALS (1 is fastest for NCF)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="auto (default: cuda when available) | cpu | cuda | cuda:N | mps."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML with ColdstartConfig keys; --set and the flags override it."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one config key, e.g. --set ncf.lr=0.002; repeatable."),
    ] = None,
) -> None:
    """Rank each user's held-out latest item against sampled negatives: NCF vs baselines, warm vs cold.

    Flags left out take their defaults from the config (ColdstartConfig, NCFConfig; docs/coldstart-eval.md).
    """
    from querylearn.data.dataset import load_dataset
    from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
    from querylearn.recsys.report import render_table, write_report
    from querylearn.recsys.representations import read_user_parquet, representations_from_runs

    if (after_task or mask_task) and not run:
        raise QuerylearnError(
            "--after-task/--mask-task select the checkpoint and mask of a --run export; "
            "pass at least one --run"
        )
    if ncf_model and model_alias and ncf_model != model_alias:
        raise QuerylearnError(
            f"--ncf-model {ncf_model} and --model {model_alias} disagree; give only --ncf-model"
        )
    overrides = {
        "negatives": negatives,
        "seed": seed,
        "cold_fraction": cold_fraction,
        "threads": threads,
        "variants": list(variant) if variant else None,
        "baselines": list(baseline) if baseline else None,
        "ncf.model": ncf_model or model_alias,
        "ncf.epochs": epochs,
        "ncf.device": device,
    }
    config = stage_config(ColdstartConfig, config=config, sets=sets, flags=overrides)
    dataset = load_dataset(data)
    sources = []
    taken: set[str] = set()
    for path in users_from or []:
        rep = read_user_parquet(path)
        rep.name = _unique_name(rep.name, taken)
        sources.append(rep)
    for rep in representations_from_runs(list(run), list(after_task or []), mask_task) if run else []:
        rep.name = _unique_name(rep.name, taken)
        sources.append(rep)
    item_vectors = item_vectors_from_table(item_init, dataset) if item_init is not None else None
    report = coldstart_eval(
        dataset,
        sources,
        config,
        item_vectors=item_vectors,
        item_vectors_origin=None if item_init is None else str(item_init),
        log=lambda m: console.print(f"[dim]{escape(m)}[/]", highlight=False),
    )
    write_report(out, report, config)
    print_table(render_table(report))  # full width when not a terminal: method names are not folded
    console.print(f"wrote {out / 'report.json'} and {out / 'report.csv'} ({report.seconds:.1f}s)")
