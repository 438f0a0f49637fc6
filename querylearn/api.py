"""The Python API: every stage of the pipeline as one function with keyword options and a typed result.

    import querylearn as ql

    ds = ql.prepare("synthetic", "work/data", users=300)                 # -> PreparedDataset
    table = ql.embed_init(ds.path, "work/emb", source="random", dim=32)   # -> EmbeddingTable
    run = ql.train_sequence(ds.path, "work/run", embeddings=table.path)  # -> TrainResult
    users = ql.export_users(run.path, "work/users.parquet")             # -> UserVectors
    report = ql.coldstart_eval(ds.path, "work/cold", runs=[run.path])   # -> ColdstartResult
    model = ql.export_model(run.path, "work/model")                      # -> ExportedModel
    enc = ql.UserEncoder.from_pretrained("work/model")
    vectors = enc.encode([["캠핑 의자", "텐트"]])                        # float32 [1, C]

Each function writes the same files as the CLI command of the same name (docs/api.md); the results
hold the paths and the numbers a notebook needs. Errors are :class:`querylearn.QuerylearnError`
subclasses with one-line messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from querylearn.embeddings import EmbeddingTable
from querylearn.errors import QuerylearnError
from querylearn.neighbours import NeighbourResult, query_neighbours, user_neighbours
from querylearn.pretrained import EncodedUsers, ExportedModel, UserEncoder, export_model
from querylearn.userlog import EmbeddedUsers, embed_users

__all__ = [
    "ColdstartResult",
    "EmbeddedUsers",
    "EmbeddingTable",
    "EncodedUsers",
    "ExportedModel",
    "NeighbourResult",
    "PreparedDataset",
    "TrainResult",
    "UserEncoder",
    "UserVectors",
    "coldstart_eval",
    "embed_init",
    "embed_users",
    "export_model",
    "export_users",
    "prepare",
    "query_neighbours",
    "train_sequence",
    "user_neighbours",
]


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset directory written by :func:`prepare` (``manifest`` is its dataset.json)."""

    path: Path
    source: str
    synthetic: bool
    n_users: int
    vocab_size: int
    seq_len: int
    tasks: list[str]
    manifest: dict = field(repr=False)


def prepare(
    source: str,
    out: str | Path,
    *,
    users: int | None = None,
    seed: int = 0,
    noisy_task: bool = False,
    path: str | Path | None = None,
    queries: str | Path | None = None,
    tasks: str | Path | None = None,
    interactions: str | Path | None = None,
    items: str | Path | None = None,
    seq_len: int | None = None,
    min_count: int = 1,
    min_label_count: int = 1,
    split: str = "user",
    exclude_last_interaction: bool = False,
) -> PreparedDataset:
    """``querylearn prepare SOURCE --out OUT``: source "synthetic" | "movielens-100k" | "kmrd" | "teracon" |
    "files". ``users`` / ``seq_len`` None: the source's defaults (docs/data.md)."""
    from querylearn.data.build import BuildOptions
    from querylearn.data.sources import prepare as prepare_source

    opts = BuildOptions(
        seq_len=seq_len,
        min_count=min_count,
        min_label_count=min_label_count,
        split=split,
        seed=seed,
        exclude_last_interaction=exclude_last_interaction,
    )
    m = prepare_source(
        source,
        out,
        opts,
        users=users,
        noisy_task=noisy_task,
        path=path,
        queries=queries,
        tasks=tasks,
        interactions=interactions,
        items=items,
    )
    return PreparedDataset(
        Path(out),
        m["source"],
        bool(m["synthetic"]),
        int(m["n_users"]),
        int(m["vocab_size"]),
        int(m["seq_len"]),
        [t["name"] for t in m["tasks"]],
        m,
    )


def embed_init(
    data: str | Path,
    out: str | Path,
    *,
    source: str = "random",
    model: str | None = None,
    pooling: str | None = None,
    segment: str = "none",
    dim: int | None = None,
    seed: int = 0,
) -> EmbeddingTable:
    """``querylearn embed-init``: the query-vector table (``vectors`` [V, D], ``queries``, ``meta``)."""
    from querylearn.embeddings import embed_init as build
    from querylearn.embeddings import resolve_config

    cfg = resolve_config(source=source, model=model, pooling=pooling, segment=segment, dim=dim, seed=seed)
    return build(data, out, cfg)


@dataclass(frozen=True)
class TrainResult:
    """A run directory written by :func:`train_sequence`. ``R[i][j]``: score on task j after task i
    (None above the diagonal); ``metrics``: the whole metrics.json."""

    path: Path
    strategy: str
    tasks: list[str]
    metric: list[str]
    R: list[list[float | None]]
    bwt: float | None
    fwt: float | None
    metrics: dict = field(repr=False)

    @property
    def final(self) -> dict[str, float]:
        """Each task's score after the last task (the last row of R)."""
        return {t: v for t, v in zip(self.tasks, self.R[-1], strict=True) if v is not None}


def train_sequence(
    data: str | Path,
    out: str | Path,
    *,
    embeddings: str | Path | None = None,
    strategy: str | None = None,
    tasks: list[str] | None = None,
    seed: int | None = None,
    config: str | Path | None = None,
    overrides: dict | None = None,
) -> TrainResult:
    """``querylearn train-sequence``: ``overrides`` are dotted config keys, e.g.
    ``{"model.channels": 64, "t1.max_epochs": 5}`` (the CLI's ``--model.channels 64``)."""
    from querylearn.config import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.loop import train_sequence as train

    values = dict(overrides or {})
    for key, value in (("strategy", strategy), ("seed", seed), ("tasks", tasks)):
        if value is not None:
            values[key] = list(value) if key == "tasks" else value
    cfg = load_config(TrainConfig, config, values)
    m = train(data, out, config=cfg, embeddings=embeddings)
    return TrainResult(
        Path(out),
        m["strategy"],
        list(m["tasks"]),
        list(m["metric"]),
        m["R"],
        m["bwt"].get("mean"),
        m["fwt"].get("mean"),
        m,
    )


@dataclass(frozen=True)
class UserVectors:
    """User vectors of :func:`export_users`. ``vectors`` float32 [U, D] aligned with ``user_ids``."""

    user_ids: list[str]
    vectors: np.ndarray = field(repr=False)
    info: dict = field(repr=False)
    path: Path | None = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def export_users(
    run: str | Path,
    out: str | Path | None = None,
    *,
    task: str | None = None,
    users: str = "all",
    wide: bool = False,
) -> UserVectors:
    """``querylearn export-users``; with ``out=None`` nothing is written (vectors in memory only)."""
    from querylearn import export

    if out is None:
        user_ids, vectors = export.export_user_representations(run, task=task, users=users)
        return UserVectors(list(user_ids), vectors, {"run_dir": str(run), "task": task, "users": users})
    from querylearn.userfile import read_user_vectors

    export.export_users(run, out, task=task, users=users, wide=wide)
    user_ids, vectors, info = read_user_vectors(out)
    return UserVectors(user_ids, vectors, info, Path(out))


@dataclass(frozen=True)
class ColdstartResult:
    """A coldstart-eval report. ``methods[name][group]`` (group "warm" | "cold" | "all") holds
    n_users, hr@1, hr@5, hr@10, ndcg@10."""

    path: Path
    counts: dict
    methods: dict[str, dict]
    report: dict = field(repr=False)

    def score(self, method: str, metric: str = "hr@10", group: str = "cold") -> float | None:
        """One number of the report, e.g. ``score("neumf-rep[run]", "hr@10", "cold")``."""
        if method not in self.methods:
            raise QuerylearnError(f"method {method!r} is not in the report; it has {', '.join(self.methods)}")
        return self.methods[method][group][metric]


def coldstart_eval(
    data: str | Path,
    out: str | Path,
    *,
    runs: list[str | Path] = (),
    after_tasks: list[str] = (),
    users_from: list[str | Path] = (),
    model: str = "neumf",
    negatives: int = 99,
    seed: int = 0,
    cold_fraction: float = 0.0,
    epochs: int | None = None,
    threads: int = 1,
) -> ColdstartResult:
    """``querylearn coldstart-eval``: NCF with each run's (after each task) or file's user vectors
    against the baselines, for warm and cold users."""
    from querylearn.config import load_config
    from querylearn.data.dataset import load_dataset
    from querylearn.recsys.coldstart import ColdstartConfig
    from querylearn.recsys.coldstart import coldstart_eval as evaluate
    from querylearn.recsys.report import write_report
    from querylearn.recsys.representations import read_user_parquet, representations_from_runs

    config = load_config(
        ColdstartConfig,
        None,
        {
            "negatives": negatives,
            "seed": seed,
            "cold_fraction": cold_fraction,
            "threads": threads,
            "ncf.model": model,
            "ncf.epochs": epochs,
        },
    )
    sources = [read_user_parquet(p) for p in users_from]
    sources += representations_from_runs([Path(r) for r in runs], list(after_tasks)) if runs else []
    report = evaluate(load_dataset(data), sources, config)
    write_report(out, report, config)
    report = report if isinstance(report, dict) else report.to_dict()
    return ColdstartResult(Path(out), dict(report["counts"]), dict(report["methods"]), report)
