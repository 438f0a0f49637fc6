"""The train-sequence run: tasks in order, R after every task, checkpoints, resume and add-task.

RUN_DIR holds ``run.json`` (kind "train-run"), ``config.toml`` (the resolved TrainConfig),
``checkpoints/NN-TASK.{safetensors,json}``, ``logs/NN-TASK.jsonl`` (one record per epoch;
``logs/single/`` for the SinMo reference), ``metrics.json`` + ``R.csv`` (:mod:`results`) and, for
strategies with task masks, ``masks.npz``. The run asks the strategy what to train and which model
answers for a task (:mod:`protocol`); it never tests a strategy's name.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from querylearn import __version__
from querylearn.artifacts import atomic_write_bytes, read_json, write_json
from querylearn.config import dump_toml, load_config, to_dict
from querylearn.continual import distributed
from querylearn.continual.allocator import set_mmap_threshold
from querylearn.continual.checkpoint import load_checkpoint, save_checkpoint
from querylearn.continual.config import TrainConfig
from querylearn.continual.data import (
    check_tasks,
    load_input_vectors,
    resolve_device,
    resolve_task_order,
    task_data,
)
from querylearn.continual.evaluation import metrics_of_ranks, row_ranks
from querylearn.continual.fit import FitResult, Progress, fit, seed_everything
from querylearn.continual.precision import PrecisionChoice, resolve_precision
from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.results import RMatrix, TrainMetrics, jsonable, read_ranks, write_masks, write_ranks
from querylearn.continual.strategies import build_strategy
from querylearn.data.dataset import Dataset, check_dataset_fingerprint, dataset_fingerprint, load_dataset
from querylearn.errors import ArtifactError, ConfigError, QuerylearnError
from querylearn.heuristics import next_query_references
from querylearn.models.user_encoder import UserEncoder
from querylearn.runinfo import read_run_paths, stored_path

RUN_KIND = "train-run"
RUN_SCHEMA_VERSION = 1
REFERENCE_STRATEGY = "single"  # the SinMo reference of FWT (``with_single``)
REFERENCE_SEED_OFFSET = 500


def _stem(run_dir: Path, position: int, name: str, sub: str = "checkpoints") -> Path:
    return run_dir / sub / f"{position + 1:02d}-{name}"


class _Run:
    """Mutable state of one train-sequence run (history carried in every checkpoint)."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        ds: Dataset,
        order: list[str],
        vectors: np.ndarray | None,
        progress: Progress | None,
        tracker: Callable[[str, dict], None] | None = None,
    ):
        self.run_dir = run_dir
        self.tracker = tracker  # also receives every log record: (log name NN-TASK, record)
        self.config = config
        self.ds = ds
        self.order = order
        self.vectors = vectors
        self.progress = progress
        # cuda:LOCAL_RANK under torchrun
        self.device = distributed.local_device(resolve_device(config.device))
        # "auto" becomes fp32 or bf16 here (continual/precision.py); config.toml keeps what was asked
        self.precision = resolve_precision(config.precision, self.device)
        self.config = config = dataclasses.replace(config, precision=self.precision.used)
        # [n_users, L]: on the CPU the memory-mapped file (rows copied per batch), else one device copy
        self.sequences = (
            distributed.MappedSequences(ds.sequences, self.device) if self.device.type == "cpu"
            else torch.as_tensor(np.asarray(ds.sequences, dtype=np.int64), device=self.device)
        )
        self.tasks = {name: task_data(ds, name) for name in ds.task_names}
        self.strategy = build_strategy(config.strategy, config)
        self.history: dict = {"R": [], "R_detail": [], "single": [], "single_detail": [], "per_task": []}
        self.models: dict[int, UserEncoder] = {}  # position -> model that may answer for a task
        self._references: dict[str, dict] = {}
        self.ranks: dict[str, np.ndarray] = {}  # ranks.npz: per-row test ranks behind R (results.py)

    def new_model(self, masking: str) -> UserEncoder:
        return UserEncoder(
            len(self.ds.vocab),
            self.config.model,
            masking=masking,
            init_vectors=self.vectors,
            smax=self.config.smax,
            next_query_task=next((n for n in self.order if self.tasks[n].kind == "next_query"), None),
            next_query_head=self.config.next_query.head,
        ).to(self.device)

    def task_seed(self, position: int, offset: int = 0) -> int:
        return int(self.config.seed) * 1_000_003 + 1000 * position + offset

    def _logger(self, path: Path):
        if not distributed.world().is_main:  # logs are rank 0's
            return (lambda record: None), open(os.devnull, "w")
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w", encoding="utf-8")
        steps = [0]  # optimizer steps of this log's fit so far

        def log(record: dict) -> None:
            # every record carries when it was written (UTC, ISO 8601), the cumulative step and its epoch
            steps[0] += int(record.get("steps", 0))
            now = datetime.datetime.now(datetime.UTC)
            stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record = {"timestamp": stamp, "step": steps[0], **record}
            fh.write(json.dumps(jsonable(record), ensure_ascii=False) + "\n")
            fh.flush()
            if self.tracker is not None:
                self.tracker(path.stem, record)

        return log, fh

    def learn_task(
        self,
        strategy: ContinualStrategy,
        position: int,
        prev: UserEncoder | None,
        *,
        seed_offset: int,
        log_path: Path,
        label: str,
    ) -> tuple[UserEncoder, FitResult]:
        """Task ``position`` with ``strategy``: its model, then each of its phases as one fit."""
        seen = [self.tasks[n] for n in self.order[: position + 1]]
        seed_everything(self.task_seed(position, seed_offset))
        model = strategy.setup_model(prev, seen, lambda: self.new_model(strategy.masking))
        model.heads.copy_grad = self.config.next_query.copy_grad  # also in retention passes, after resume
        train_tasks = strategy.train_tasks(seen)
        batch_sizes = {t.name: self.config.phase(self.order.index(t.name)).batch_size for t in train_tasks}
        n_phases = strategy.phases(seen[-1])
        log, fh = self._logger(log_path)
        results = []
        try:
            for phase in range(n_phases):
                results.append(
                    fit(
                        model,
                        strategy,
                        train_tasks,
                        all_tasks=self.tasks,
                        sequences=self.sequences,
                        config=self.config,
                        position=position,
                        seed=self.task_seed(position, offset=seed_offset + phase),
                        batch_sizes=batch_sizes,
                        log=log,
                        progress=self.progress,
                        label=label if n_phases == 1 else f"{label} phase {phase + 1}",
                        train_phase=phase,
                    )
                )
        finally:
            fh.close()
        return model, FitResult.combine(results)

    def reference(self, position: int) -> dict:
        """SinMo score of task ``position`` (the FWT reference): the reference strategy's fresh model
        trained on that task only, evaluated on its test split."""
        name = self.order[position]
        model, _ = self.learn_task(
            build_strategy(REFERENCE_STRATEGY, self.config),
            position,
            None,
            seed_offset=REFERENCE_SEED_OFFSET,
            log_path=self.run_dir / "logs" / "single" / f"{position + 1:02d}-{name}.jsonl",
            label=f"single {name}",
        )
        return self._evaluate(model, position, f"single_{position}")

    def _evaluate(self, model: UserEncoder, j: int, key: str) -> dict:
        """Task j's test metrics; its per-row ranks are kept under ``key`` for ranks.npz."""
        task = self.tasks[self.order[j]]
        ranks = row_ranks(model, task, "test", self.sequences, config=self.config,
                          batch_size=self.config.phase(j).eval_batch_size)
        self.ranks[key] = ranks.astype(np.int32)
        self.ranks[f"users_{j}"] = task.users["test"].astype(np.int32)
        return metrics_of_ranks(ranks)

    def _keep_models(self, position: int) -> None:
        """Keep only the models that answer for a task after ``position``."""
        needed = {self.strategy.model_position(j, position) for j in range(position + 1)}
        self.models = {p: m for p, m in self.models.items() if p in needed}

    def learn(self, position: int, model: UserEncoder | None) -> UserEncoder:
        name = self.order[position]
        model, result = self.learn_task(
            self.strategy, position, model, seed_offset=0,
            log_path=self.run_dir / "logs" / f"{position + 1:02d}-{name}.jsonl", label=name,
        )
        self.models[position] = model
        self._keep_models(position)
        row, detail = [], []
        for j in range(position + 1):
            m = self._evaluate(self.models[self.strategy.model_position(j, position)], j, f"R_{position}_{j}")
            detail.append(m)
            row.append(m[self.tasks[self.order[j]].metric])
        self.history["R"].append(row + [None] * (len(self.order) - len(row)))
        self.history["R_detail"].append(detail)
        self.history["per_task"].append(
            {
                "task": name,
                "epochs": result.epochs,
                "best_epoch": result.best_epoch,
                "best_valid": result.best_valid,
                "seconds_per_epoch": result.seconds_per_epoch,
                "skipped_steps": result.skipped_steps,
            }
        )
        if self.config.with_single:
            single = detail[-1] if self.strategy.reference_diagonal else self.reference(position)
            self.history["single"].append(single[self.tasks[name].metric])
            self.history["single_detail"].append(single)
        if not distributed.world().is_main:  # ranks, checkpoints and masks are rank 0's
            return model
        write_ranks(self.run_dir, self.ranks)
        seen = self.order[: position + 1]
        save_checkpoint(
            _stem(self.run_dir, position, name),
            model,
            {
                "position": position,
                "task": name,
                "tasks_seen": seen,
                "strategy": self.strategy.name,
                "config": to_dict(self.config),
                "history": jsonable(self.history),
                # the checkpoint whose model answers for each task (export-users reads it)
                "task_checkpoints": {
                    t: _stem(self.run_dir, p, self.order[p]).with_suffix(".json").name
                    for t, p in ((t, self.strategy.model_position(j, position)) for j, t in enumerate(seen))
                },
            },
            self.strategy.state_dict(),
        )
        if self.strategy.has_task_masks and model.has_task_masks:
            with torch.no_grad():
                masks = model.all_masks(model.smax)
            write_masks(self.run_dir, list(model.task_names), masks.float().cpu().numpy(), model.smax)
        return model

    def restore(self, position: int) -> UserEncoder:
        """Load the checkpoint after task ``position`` (and the earlier models that still answer)."""
        path = _stem(self.run_dir, position, self.order[position]).with_suffix(".json")
        model, meta, strategy_state = load_checkpoint(path, self.device)
        if meta["tasks_seen"] != self.order[: position + 1]:
            raise ArtifactError(
                f"{path}: tasks_seen {meta['tasks_seen']} differ from the run's order "
                f"{self.order[: position + 1]}"
            )
        self.strategy.load_state_dict(strategy_state)
        self.history = meta["history"]
        self.ranks = read_ranks(self.run_dir) or {}
        for row in self.history["R"]:  # the order may have grown by --add-task
            row.extend([None] * (len(self.order) - len(row)))
        self.models = {position: model}
        earlier = {self.strategy.model_position(j, position) for j in range(position + 1)} - {position}
        for p in sorted(earlier):
            stem = _stem(self.run_dir, p, self.order[p]).with_suffix(".json")
            self.models[p] = load_checkpoint(stem, self.device)[0]
        return model

    def references(self) -> dict:
        """Training-free rankers on each next_query task's test rows (the rows R is measured on)."""
        for name in self.order:
            t = self.tasks[name]
            if t.kind == "next_query" and name not in self._references:
                seqs = np.asarray(self.ds.sequences)
                self._references[name] = next_query_references(
                    seqs[t.users["test"], :-1], t.labels["test"],
                    seqs[np.unique(t.users["train"]), 1:], t.n_classes,
                )
        return {n: self._references[n] for n in self.order if n in self._references}

    def metrics(self) -> TrainMetrics:
        R = [row[: len(self.order)] for row in self.history["R"]]
        single = self.history["single"] if self.config.with_single else None
        if self.strategy.reference_diagonal:
            single = [R[i][i] for i in range(len(R))]
        r = RMatrix(self.order, [self.tasks[n].metric for n in self.order], R, single)
        return TrainMetrics.build(
            r,
            strategy=self.strategy.name,
            R_detail=self.history["R_detail"],
            per_task=self.history["per_task"],
            seed=self.config.seed,
            device=str(self.device),
            data=str(self.ds.path),
            references=self.references(),
        )


def _check_run_dir(run_dir: Path) -> None:
    if (run_dir / "run.json").exists() or (run_dir / "checkpoints").exists():
        raise QuerylearnError(
            f"{run_dir}: already holds a run; continue it with "
            f"'querylearn train-sequence --resume {run_dir}' or choose a new --out"
        )


def _stored_run(run_dir: Path) -> tuple[TrainConfig, Path, Path | None]:
    """(config, data path, embeddings path) of an existing run (for --resume)."""
    run_meta = read_json(run_dir / "run.json")
    if run_meta.get("kind") != RUN_KIND:
        raise ArtifactError(f"{run_dir}/run.json: expected kind '{RUN_KIND}', found {run_meta.get('kind')!r}")
    paths = read_run_paths(run_dir)  # relative to the run directory (older runs: absolute)
    return load_config(TrainConfig, run_dir / "config.toml"), paths.data, paths.embeddings


def _write_run_files(
    run_dir: Path,
    config: TrainConfig,
    order: list[str],
    data: str | Path,
    embeddings: str | Path | None,
    precision: PrecisionChoice,
) -> None:
    """``config.toml`` (the resolved config with the task order) and ``run.json``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    stored = dataclasses.replace(config, tasks=tuple(order))
    atomic_write_bytes(run_dir / "config.toml", dump_toml(stored).encode("utf-8"))
    write_json(
        run_dir / "run.json",
        {
            "kind": RUN_KIND,
            "schema_version": RUN_SCHEMA_VERSION,
            "querylearn_version": __version__,
            "data": stored_path(data, run_dir),  # relative: the run can move with its data
            "embeddings": None if embeddings is None else stored_path(embeddings, run_dir),
            "strategy": config.strategy,
            "tasks": order,
            "data_fingerprint": dataset_fingerprint(data, order),
            "precision": dataclasses.asdict(precision),
        },
    )


def _done(run_dir: Path, order: list[str]) -> list[int]:
    return [p for p in range(len(order)) if _stem(run_dir, p, order[p]).with_suffix(".json").is_file()]


def train_sequence(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    embeddings: str | Path | None = None,
    resume: str | Path | None = None,
    add_task: str | None = None,
    progress: Progress | None = None,
    on_task_end: Callable[[int, str, dict], None] | None = None,
    tracker: Callable[[str, dict], None] | None = None,
) -> dict:
    """Train the task sequence and write RUN_DIR; returns the metrics dict (also ``metrics.json``).

    New run: ``data`` + ``out`` + ``config``. ``resume=RUN_DIR`` continues from the last complete
    checkpoint with the stored config (``data``/``config`` must be None); ``add_task=NAME`` (with
    ``resume``) appends one more task to a finished run. ``on_task_end(position, name, metrics)``
    is called after each task's checkpoint (tests use it to simulate an interruption);
    ``tracker(log_name, record)`` receives every JSONL log record too (``--log-to``).
    """
    if resume is not None:
        run_dir = Path(resume)
        if config is not None or data is not None or embeddings is not None:
            raise ConfigError(
                "--resume uses the run's stored config, data and embeddings; "
                "drop --config/--data/--embeddings and other overrides"
            )
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise ConfigError(f"--out {out} differs from --resume {run_dir}; pass only --resume RUN_DIR")
        config, data, embeddings = _stored_run(run_dir)
    else:
        if data is None or out is None:
            raise ConfigError(
                "train-sequence needs --data DATASET_DIR and --out RUN_DIR (or --resume RUN_DIR)"
            )
        if add_task is not None:
            raise ConfigError("--add-task needs --resume RUN_DIR (a finished run to extend)")
        run_dir = Path(out)
        _check_run_dir(run_dir)
        config = config or TrainConfig()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    set_mmap_threshold(config.mmap_threshold_mb)  # opt-in: freed activations go back to the OS
    world = distributed.init_from_env(config.device)  # torchrun: join the process group (no-op otherwise)
    ds = load_dataset(data, mmap=True)  # sequences.npy memory-mapped (MappedSequences on the CPU)
    if resume is not None:  # a re-prepared dataset (other vocabulary, users, labels) cannot continue the run
        check_dataset_fingerprint(data, read_json(run_dir / "run.json").get("data_fingerprint"), run_dir)
    order = resolve_task_order(ds, config.tasks)
    if add_task is not None:
        if add_task in order:
            raise ConfigError(f"--add-task {add_task}: the run already has this task ({','.join(order)})")
        done = _done(run_dir, order)
        if len(done) != len(order):
            raise QuerylearnError(
                f"{run_dir}: the run is unfinished ({len(done)}/{len(order)} tasks); "
                f"first run --resume {run_dir} without --add-task"
            )
        order = resolve_task_order(ds, order + [add_task])
        config = dataclasses.replace(config, tasks=tuple(order))
    check_tasks(ds, order)
    vectors = load_input_vectors(embeddings, ds) if embeddings is not None else None
    if not world.is_main:
        progress, tracker = None, None
    run = _Run(run_dir, config, ds, order, vectors, progress, tracker)
    distributed.barrier()  # every rank has checked the run folder before rank 0 writes to it
    if world.is_main:
        _write_run_files(run_dir, config, order, data, embeddings, run.precision)
    model: UserEncoder | None = None
    start = 0
    if resume is not None:
        done = _done(run_dir, order)
        if done:
            last = max(done)
            if done != list(range(last + 1)):
                raise ArtifactError(f"{run_dir}/checkpoints: missing checkpoints before task {order[last]}")
            model = run.restore(last)
            start = last + 1
    try:
        for position in range(start, len(order)):
            model = run.learn(position, model)
            metrics = run.metrics()
            if world.is_main:
                metrics.write(run_dir)
            if on_task_end is not None:
                on_task_end(position, order[position], metrics.to_dict())
    finally:
        if progress is not None:
            progress.close()
    metrics = run.metrics()
    if world.is_main:
        metrics.write(run_dir)
    distributed.barrier()  # the other ranks return once rank 0's files are written
    return metrics.to_dict()
