"""``querylearn experiment NAME``: thin wrapper over :func:`querylearn.experiments.runner.run_experiment`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from querylearn.cli.app import app, console
from querylearn.errors import ConfigError


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def _seeds(text: str | None) -> list[int] | None:
    items = _csv(text)
    if items is None:
        return None
    try:
        seeds = [int(x) for x in items]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give comma-separated integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: give at least one seed, each once")
    return seeds


@app.command("experiment")
def experiment_cli(
    name: Annotated[
        str, typer.Argument(help="order | noise | sampling | adapt | init (docs/experiments.md).")
    ],
    data: Annotated[Path, typer.Option("--data", help="Dataset directory from 'querylearn prepare'.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Experiment folder: runs/, results.json, results.md, "
            "figures/. Re-run the same command to resume it.",
        ),
    ],
    strategies: Annotated[
        str | None,
        typer.Option(
            "--strategies",
            help="Comma-separated strategies (sampling: its variants); default per experiment.",
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Comma-separated training seeds (default 0,1,2).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML with TrainConfig keys for every run; --set overrides it."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", help="Runs trained in parallel processes.")] = 1,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a TrainConfig key for every run: --set section.key=value (repeatable)."
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Tiny model, 2 epochs per task (seconds; for tests).")
    ] = False,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="init only: a local pretrained folder, kobert=DIR, hf=DIR or DIR (hf); repeatable.",
        ),
    ] = None,
) -> None:
    """Run one of the seed study's experiments as train-sequence runs and summarise it over seeds."""
    from querylearn.config_loader import parse_sets
    from querylearn.experiments.runner import run_experiment

    results = run_experiment(
        name,
        data,
        out,
        strategies=_csv(strategies),
        seeds=_seeds(seeds),
        config=config,
        sets=parse_sets(sets),
        jobs=jobs,
        quick=quick,
        models=models,
        log=lambda msg: console.print(msg, highlight=False),
    )
    from querylearn.experiments.render import print_tables

    print_tables(results, console)
    console.print(f"wrote {out}/results.json, {out}/results.md and {out}/figures/")
