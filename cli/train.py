"""``querylearn train-sequence`` and ``querylearn export-users``: thin wrappers over
:func:`querylearn.continual.run.train_sequence` and :func:`querylearn.export.export_users`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from querylearn.cli.app import app, console, print_table
from querylearn.cli.choices import ExportUsers, Strategy
from querylearn.cli.tracking import LogTo
from querylearn.config_loader import parse_dotted_args as parse_overrides
from querylearn.config_loader import parse_sets
from querylearn.errors import ConfigError, QuerylearnError


def _epochs_overrides(epochs: str | None) -> dict:
    if epochs is None:
        return {}
    try:
        values = [int(x) for x in epochs.split(",")]
    except ValueError:
        raise ConfigError(
            f"--epochs {epochs!r}: give N (every task) or T1,T2,LATER (e.g. 10,100,100)"
        ) from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise ConfigError(f"--epochs {epochs!r}: give N (every task) or T1,T2,LATER with positive integers")
    return {"t1.max_epochs": values[0], "t2.max_epochs": values[1], "later.max_epochs": values[2]}


def render_r(metrics: dict) -> Table:
    """R[i][j] (rows: after task i; columns: task j) with the per-task metric, BWT, FWT and s/epoch."""
    from querylearn.continual.results import TrainMetrics
    from querylearn.report import rich_table

    m = TrainMetrics.from_dict(metrics)
    header, rows = m.r_matrix.table(m.seconds_per_epoch)
    table = rich_table(f"R matrix ({m.strategy}): score on task j after learning task i", header, rows)
    table.caption = m.r_matrix.summary()
    return table


def render_references(metrics: dict) -> list[Table]:
    """T1 (each next_query task) against the training-free rankers on the same test rows."""
    from querylearn.continual.results import TrainMetrics
    from querylearn.report import rich_table

    return [
        rich_table(f"{task} against training-free rankers (same test rows)", header, rows)
        for task, header, rows in TrainMetrics.from_dict(metrics).reference_tables()
    ]


@app.command(
    "train-sequence",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train_sequence_cli(
    ctx: typer.Context,
    data: Annotated[
        Path | None, typer.Option("--data", help="Dataset directory from 'querylearn prepare'.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Run directory to create (checkpoints, logs, metrics.json, R.csv)."),
    ] = None,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            "--embeddings",
            help="Embedding table from 'querylearn embed-init' (vectors.npy [V, D]); default random init.",
        ),
    ] = None,
    strategy: Annotated[
        Strategy | None,
        typer.Option("--strategy", help="Continual strategy or ablation (default teracon)."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML with any TrainConfig keys; flags override it.")
    ] = None,
    tasks: Annotated[
        str | None,
        typer.Option("--tasks", help="Comma-separated task order (default: the dataset's; T1 first)."),
    ] = None,
    epochs: Annotated[
        str | None, typer.Option("--epochs", help="Max epochs: N for every task, or T1,T2,LATER.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of initialisation, batching and sampling.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="auto (default) | cpu | cuda | cuda:N | mps.")
    ] = None,
    with_single: Annotated[
        bool | None,
        typer.Option(
            "--with-single/--no-with-single", help="Also train one model per task alone (SinMo) for FWT."
        ),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue RUN_DIR from its last complete checkpoint.")
    ] = None,
    add_task: Annotated[
        str | None, typer.Option("--add-task", help="With --resume: learn one more task on a finished run.")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")] = True,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key: --set section.key=value (repeatable)."),
    ] = None,
    log_to: Annotated[
        LogTo | None,
        typer.Option(
            "--log-to", help="Also send the epoch records to an experiment tracker (optional extras)."
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            help="Train data-parallel in N local processes (launches torchrun --standalone; gloo on CPU, "
            "NCCL on GPU). Same as 'torchrun --nproc-per-node N -m querylearn train-sequence ...'.",
        ),
    ] = 1,
) -> None:
    """Train the task sequence (TERACON or a baseline) and report the R matrix, FWT and BWT.

    ``--set section.key=value`` (or the extra-option form ``--section.key value``) overrides single
    config keys, e.g. ``--set model.channels=64``.
    """
    if nproc != 1:
        values = {
            "--data": data,
            "--out": out,
            "--embeddings": embeddings,
            "--strategy": strategy,
            "--config": config,
            "--tasks": tasks,
            "--epochs": epochs,
            "--seed": seed,
            "--device": device,
            "--resume": resume,
            "--add-task": add_task,
            "--log-to": getattr(log_to, "value", log_to),
        }
        args = [a for k, v in values.items() if v is not None for a in (k, str(v))]
        if with_single is not None:
            args.append("--with-single" if with_single else "--no-with-single")
        args.append("--progress" if progress else "--no-progress")
        args += [a for v in sets or [] for a in ("--set", v)]
        _launch(nproc, args + list(ctx.args), out)
        return
    from querylearn.artifacts import check_out_dir
    from querylearn.cli.progress import RichProgress
    from querylearn.config import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.run import train_sequence

    overrides = {**parse_sets(sets), **parse_overrides(list(ctx.args))}
    overrides.update(_epochs_overrides(epochs))
    flag_values = {"strategy": strategy, "seed": seed, "device": device}
    if tasks is not None:
        flag_values["tasks"] = [t.strip() for t in tasks.split(",") if t.strip()]
    if with_single is not None:
        flag_values["with_single"] = with_single
    overrides.update({k: v for k, v in flag_values.items() if v is not None})
    rank0 = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 draws, tracks and reports
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from querylearn.continual import distributed

        ctx.call_on_close(distributed.shutdown)  # leave the process group before the process exits
    show = progress and console.is_terminal and not console.quiet and rank0
    reporter = RichProgress(console) if show else None
    tracker = None
    if log_to is not None and (resume or out) is not None and rank0:
        from querylearn.cli.tracking import make_tracker

        tracker, close_tracker = make_tracker(log_to, resume if resume is not None else out)
        ctx.call_on_close(close_tracker)  # also when training fails
    if resume is not None:
        if overrides or config is not None or data is not None or embeddings is not None:
            raise ConfigError(
                "--resume continues with the run's stored config.toml; "
                "drop --data, --config, --embeddings and overrides"
            )
        metrics = train_sequence(
            out=out, resume=resume, add_task=add_task, progress=reporter, tracker=tracker
        )
        run_dir = resume
    else:
        if out is not None:
            check_out_dir(out)
        cfg = load_config(TrainConfig, config, overrides)  # errors name the file or the override
        metrics = train_sequence(
            data,
            out,
            config=cfg,
            embeddings=embeddings,
            add_task=add_task,
            progress=reporter,
            tracker=tracker,
        )
        run_dir = out
    if not rank0:
        return
    print_table(render_r(metrics))
    for table in render_references(metrics):
        print_table(table)
    console.print(f"wrote {run_dir}/metrics.json and {run_dir}/R.csv")


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The torchrun command line of ``train-sequence --nproc N`` (one machine, rendezvous on localhost)."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc} must be at least 1")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "querylearn",
        "train-sequence",
        *args,
    ]


def _launch(nproc: int, args: list[str], out: Path | None) -> None:
    """Run train-sequence in ``nproc`` processes; their own messages reach the terminal."""
    import subprocess

    from querylearn.artifacts import check_out_dir

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--nproc launches torchrun itself; under torchrun drop --nproc")
    cmd = torchrun_command(nproc, args)
    if out is not None:
        check_out_dir(out)
    code = subprocess.run(cmd, check=False).returncode
    if code != 0:
        raise QuerylearnError(
            f"train-sequence --nproc {nproc}: the training processes failed "
            f"(exit code {code}); their messages are above"
        )


@app.command("export-users")
def export_users_cli(
    run: Annotated[Path, typer.Option("--run", help="Run directory of 'querylearn train-sequence'.")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (user_id, embedding).")],
    after_task: Annotated[
        str | None,
        typer.Option(
            "--after-task",
            help="Use the model as it was after learning this task (trained on T1..TASK only); "
            "default the last task learnt.",
        ),
    ] = None,
    mask_task: Annotated[
        str | None,
        typer.Option(
            "--mask-task",
            "--task",
            help="Task whose mask (and, for 'single', model) is used; default the --after-task "
            "checkpoint's last task. --task is the older name.",
        ),
    ] = None,
    subset: Annotated[
        ExportUsers | None,
        typer.Option("--subset", help="Every user or only the test split's users (default all)."),
    ] = None,
    users_alias: Annotated[
        ExportUsers | None, typer.Option("--users", hidden=True, help="Old name of --subset.")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Users per forward pass.")] = 1024,
    wide: Annotated[
        bool, typer.Option("--wide", help="One float32 column per dimension (v0..v{D-1}).")
    ] = False,
) -> None:
    """Write user representations (the last position's output under a task's mask) to Parquet."""
    from querylearn.export import export_users

    if subset and users_alias and subset != users_alias:
        raise QuerylearnError(f"--subset {subset} and --users {users_alias} disagree; give only --subset")
    users = subset or users_alias or "all"
    info = export_users(
        run, out, after_task=after_task, mask_task=mask_task, users=users, batch_size=batch_size, wide=wide
    )
    console.print(
        f"wrote {info['n_users']:,} users x {info['dim']} dims (model after {info['after_task']}, "
        f"mask of {info['task']}) to {out}"
    )
