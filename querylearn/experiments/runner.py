"""Run one experiment: its train-sequence runs under ``OUT/runs/``, then ``results.json`` +
``results.md`` + ``figures/``.

Every run is an ordinary train-sequence run directory. Re-running the same command continues a
killed experiment: a finished run (``metrics.json`` covering all its tasks) is reused, a started
one is continued with train-sequence's resume (from its last complete checkpoint), the rest are
trained. ``OUT/experiment.json`` records the settings; a re-run with other settings is refused
instead of mixing runs of two set-ups. ``jobs > 1`` trains independent runs in parallel processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from querylearn import __version__
from querylearn.artifacts import check_out_dir, read_json, write_json
from querylearn.config_loader import load_config
from querylearn.continual.config import TrainConfig
from querylearn.data.dataset import load_dataset, load_manifest
from querylearn.errors import ConfigError
from querylearn.experiments import EXPERIMENTS, RESULTS_KIND

RESULTS_SCHEMA_VERSION = 1
SETTINGS_KIND = "experiment"

# --quick: a tiny model and one or two epochs per task (what the tests run; seconds per run)
QUICK_SETTINGS: dict[str, Any] = {
    "model.channels": 16,
    "model.dilations": [1, 2],
    "t1.max_epochs": 2,
    "t2.max_epochs": 2,
    "later.max_epochs": 2,
    "t1.batch_size": 64,
    "t2.batch_size": 128,
    "later.batch_size": 128,
    "selection_metric": "task",
    "threads": 1,
}


@dataclass(frozen=True)
class RunSpec:
    """One train-sequence run of an experiment.

    name: its directory under ``OUT/runs``. labels: what the summary groups by (strategy, seed,
    variant...). overrides: dotted TrainConfig keys on top of the experiment's config. data:
    dataset directory (default the experiment's). embeddings: an embed-init table or None.
    """

    name: str
    labels: dict
    overrides: dict
    data: str | None = None
    embeddings: str | None = None


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    status: str  # "trained" | "resumed" | "reused"
    metrics: dict


@dataclass
class ExperimentContext:
    """What an experiment's ``plan``/``summarise`` see. ``models``: pretrained sources for
    ``init`` as ``SOURCE=DIR`` (``kobert`` or ``hf``) or a plain DIR (hf)."""

    name: str
    data: Path
    out: Path
    strategies: list[str]
    seeds: list[int]
    config: Path | None = None
    sets: dict = field(default_factory=dict)
    quick: bool = False
    models: list[str] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path:
        return self.out / "runs"

    def overrides(self, spec: RunSpec) -> dict:
        """--quick settings, then --set, then the run's own keys (strategy, seed, tasks, ...)."""
        return {**(QUICK_SETTINGS if self.quick else {}), **self.sets, **spec.overrides}

    def train_config(self, spec: RunSpec) -> TrainConfig:
        return load_config(TrainConfig, self.config, self.overrides(spec))

    def base_config(self) -> TrainConfig:
        return load_config(TrainConfig, self.config, {**(QUICK_SETTINGS if self.quick else {}), **self.sets})


def experiment_module(name: str):
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}'; choose one of {', '.join(EXPERIMENTS)}")
    return importlib.import_module(f"querylearn.experiments.{name}")


def _finished(run_dir: Path) -> dict | None:
    """The metrics of a run whose metrics.json covers every task of its run.json, else None."""
    metrics_path, run_path = run_dir / "metrics.json", run_dir / "run.json"
    if not metrics_path.is_file() or not run_path.is_file():
        return None
    metrics = read_json(metrics_path)
    if len(metrics.get("R", [])) == len(read_json(run_path).get("tasks", [None])):
        return metrics
    return None


def execute_run(
    run_dir: Path,
    data: str,
    config: TrainConfig,
    embeddings: str | None,
    on_task_end: Callable[[int, str, dict], None] | None = None,
) -> tuple[str, dict]:
    """Reuse, resume or train one run; returns (status, metrics). Top level: runs in a worker."""
    from querylearn.continual.run import train_sequence

    done = _finished(run_dir)
    if done is not None:
        return "reused", done
    if (run_dir / "run.json").is_file():
        return "resumed", train_sequence(resume=run_dir, on_task_end=on_task_end)
    return "trained", train_sequence(
        data, run_dir, config=config, embeddings=embeddings, on_task_end=on_task_end
    )


def _settings(ctx: ExperimentContext) -> dict:
    config_text = ctx.config.read_bytes() if ctx.config is not None else b""
    return {
        "kind": SETTINGS_KIND,
        "experiment": ctx.name,
        "data": str(ctx.data.resolve()),
        "strategies": list(ctx.strategies),
        "seeds": list(ctx.seeds),
        "config_sha256": hashlib.sha256(config_text).hexdigest() if ctx.config is not None else None,
        "sets": ctx.sets,
        "quick": ctx.quick,
        "models": list(ctx.models),
    }


def _check_settings(ctx: ExperimentContext) -> dict:
    """Write ``OUT/experiment.json``, or refuse when it records other settings."""
    settings = _settings(ctx)
    path = ctx.out / "experiment.json"
    if path.is_file():
        old = read_json(path)
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"{path}: this folder holds experiment '{old.get('experiment')}' run with other settings "
                f"({k}: {old.get(k)!r}, now {settings[k]!r}); re-run it with the same settings to resume, "
                f"or choose a new --out"
            )
    else:
        ctx.out.mkdir(parents=True, exist_ok=True)
        write_json(path, settings)
    return settings


def _threads_for(jobs: int, sets: dict, config: TrainConfig) -> dict:
    """Split the cores between parallel runs unless the user fixed ``threads``."""
    if jobs <= 1 or "threads" in sets or config.threads > 0:
        return {}
    return {"threads": max(1, (os.cpu_count() or 1) // jobs)}


def run_experiment(
    name: str,
    data: str | Path,
    out: str | Path,
    *,
    strategies: list[str] | None = None,
    seeds: list[int] | None = None,
    config: str | Path | None = None,
    sets: dict | None = None,
    jobs: int = 1,
    quick: bool = False,
    models: list[str] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    on_run_end: Callable[[RunResult], None] | None = None,
    on_task_end: Callable[[int, str, dict], None] | None = None,
) -> dict:
    """Run experiment ``name`` on the dataset ``data`` into ``out``; returns results.json's dict.

    ``on_run_end(result)`` is called after each run, ``on_task_end`` is passed to train-sequence
    (``jobs = 1`` only); the tests use them to simulate a killed experiment.
    """
    module = experiment_module(name)
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: must be >= 1")
    load_dataset(data, mmap=True)  # one clear line when --data is no (complete) dataset
    check_out_dir(out)
    ctx = ExperimentContext(
        name=name,
        data=Path(data),
        out=Path(out),
        strategies=list(strategies) if strategies else list(module.DEFAULT_STRATEGIES),
        seeds=list(seeds) if seeds else [0, 1, 2],
        config=Path(config) if config is not None else None,
        sets=dict(sets or {}),
        quick=quick,
        models=list(models or []),
    )
    owned = sorted({"strategy", "seed", "tasks"} & set(ctx.sets))
    if owned:
        raise ConfigError(
            f"--set {owned[0]}: the experiment sets it per run; use --strategies and --seeds instead"
        )
    base = ctx.base_config()  # bad --config / --set: fail before anything is written
    module.check(ctx)
    if not hasattr(module, "VARIANTS"):  # sampling checks its own variant names
        from querylearn.continual.strategies import STRATEGIES

        for strategy in ctx.strategies:
            STRATEGIES.get(strategy)  # a miss lists the available strategies
    settings = _check_settings(ctx)
    extra = _threads_for(jobs, ctx.sets, base)
    done: dict[str, RunResult] = {}
    while True:
        todo = [s for s in module.plan(ctx, done) if s.name not in done]
        if not todo:
            break
        names = [s.name for s in todo]
        if len(set(names)) != len(names):
            raise AssertionError(f"experiment {name}: duplicate run names {names}")
        configs = {
            s.name: ctx.train_config(dataclasses.replace(s, overrides={**extra, **s.overrides})) for s in todo
        }
        for result in _run_all(ctx, todo, configs, jobs, log, on_task_end):
            done[result.spec.name] = result
            if on_run_end is not None:
                on_run_end(result)
    summary = module.summarise(ctx, done)
    manifest = load_manifest(ctx.data)
    results = {
        "kind": RESULTS_KIND,
        "schema_version": RESULTS_SCHEMA_VERSION,
        "querylearn_version": __version__,
        "experiment": name,
        "claim": module.CLAIM,
        "data": str(ctx.data.resolve()),
        "dataset": {
            "source": manifest.get("source"),
            "synthetic": manifest.get("synthetic"),
            "n_users": manifest.get("n_users"),
            "tasks": [t["name"] for t in manifest["tasks"]],
        },
        "seeds": ctx.seeds,
        "strategies": ctx.strategies,
        "quick": quick,
        "settings": settings,
        "runs": [
            {
                "name": r.spec.name,
                "dir": str(r.run_dir.relative_to(ctx.out)),
                "labels": r.spec.labels,
                "status": r.status,
                "tasks": r.metrics["tasks"],
            }
            for r in done.values()
        ],
        **summary,
    }
    from querylearn.experiments.render import write_results

    write_results(ctx.out, results)
    return results


def _run_all(ctx, todo: list[RunSpec], configs: dict, jobs: int, log, on_task_end):
    """Yield a RunResult per spec (in ``todo`` order for one job, as they finish for several)."""
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)

    def args(s: RunSpec):
        return ctx.runs_dir / s.name, str(s.data or ctx.data), configs[s.name], s.embeddings

    if jobs == 1 or len(todo) == 1:
        for s in todo:
            log(f"run {s.name}")
            status, metrics = execute_run(*args(s), on_task_end=on_task_end)
            log(f"run {s.name}: {status}")
            yield RunResult(s, ctx.runs_dir / s.name, status, metrics)
        return
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(execute_run, *args(s)): s for s in todo}
        for s in todo:
            log(f"run {s.name} (queued)")
        try:
            for future in futures:  # submission order: results stay deterministic
                s = futures[future]
                status, metrics = future.result()
                log(f"run {s.name}: {status}")
                yield RunResult(s, ctx.runs_dir / s.name, status, metrics)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # runs already started finish their checkpoint
            raise


def seed_runs(ctx: ExperimentContext, prefix: str, labels: dict, overrides: dict, **kw) -> list[RunSpec]:
    """One RunSpec per seed: ``{prefix}-s{seed}`` with ``seed`` in labels and overrides."""
    return [
        RunSpec(f"{prefix}-s{seed}", {**labels, "seed": seed}, {**overrides, "seed": seed}, **kw)
        for seed in ctx.seeds
    ]


def group(done: dict[str, RunResult], **match) -> list[RunResult]:
    """The finished runs whose labels contain ``match``, in seed order."""
    runs = [r for r in done.values() if all(r.spec.labels.get(k) == v for k, v in match.items())]
    return sorted(runs, key=lambda r: r.spec.labels.get("seed", 0))
