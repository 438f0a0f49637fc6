"""The typed artifacts of a train-sequence run (no torch: ``report`` reads them without a model).

- :class:`RMatrix`: R[i][j] = score on task j after learning task i (None above the diagonal),
  with BWT/FWT and the renderings: ``R.csv`` (:meth:`RMatrix.csv`) and the table rows shared by the
  CLI's rich table and the report's markdown (:meth:`RMatrix.table`).
- :class:`TrainMetrics`: ``metrics.json`` (kind "train-metrics"); field names and order are a CLI
  contract.
- ``masks.npz``: every task's masks at s = smax after the last task learnt (strategies with task
  masks only), for the report's task-relation figure.
- ``ranks.npz``: the per-row test outcomes behind R, for the report's bootstrap intervals:
  ``R_i_j`` [n_j] int32 = 0-based rank of each test row's target of task j (run order) after
  learning task i, ``single_j`` the same for the SinMo reference, ``users_j`` [n_j] int32 = the
  dataset user index of each row (rows are resampled by user).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from querylearn import __version__
from querylearn.artifacts import atomic_write_bytes, read_json, read_npz, write_json, write_npz
from querylearn.errors import ArtifactError
from querylearn.metrics import bwt, fwt

METRICS_KIND = "train-metrics"
METRICS_SCHEMA_VERSION = 1
MASKS_FILE = "masks.npz"
REFERENCE_COLUMNS = ("mrr@5", "hr@5", "ndcg@5", "mrr@20", "hr@20", "accuracy")
RANKS_FILE = "ranks.npz"

Row = list[float | None]


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


@dataclass
class RMatrix:
    """R over the run's task order; ``R`` holds one row per task learnt so far (len(tasks) wide).

    ``single`` holds the single-model (SinMo) score of each learnt task, or None without them.
    """

    tasks: list[str]
    metric: list[str]
    R: list[Row]
    single: Row | None = None

    @property
    def n_learnt(self) -> int:
        return len(self.R)

    def bwt(self) -> dict[str, Any]:
        return bwt(self.R)

    def fwt(self) -> dict[str, Any]:
        if self.single is None:
            return {"per_task": [None] * len(self.R), "mean": None}
        return fwt(self.R, self.single)

    def csv(self) -> str:
        """``R.csv``: header ``after,T1,..`` over the learnt tasks, one row per learnt task (6 decimals)."""
        n = self.n_learnt
        lines = ["after," + ",".join(self.tasks[:n])]
        for i, row in enumerate(self.R):
            lines.append(self.tasks[i] + "," + ",".join(_fmt(v, ".6f") for v in row[:n]))
        return "\n".join(lines) + "\n"

    def table(self, seconds_per_epoch: list[float] | None = None) -> tuple[list[str], list[list[str]]]:
        """Header and rows (R rows, BWT and FWT per task, optionally seconds per epoch) as strings,
        rendered by the CLI (rich) and the report (markdown and rich)."""
        header = ["after \\ on", *(f"{t} ({m})" for t, m in zip(self.tasks, self.metric, strict=True))]
        rows = [[f"after {self.tasks[i]}", *(_fmt(v) for v in row)] for i, row in enumerate(self.R)]
        rows.append(["BWT", *(_fmt(v, "+.4f") for v in self.bwt()["per_task"])])
        rows.append(["FWT", *(_fmt(v, "+.4f") for v in self.fwt()["per_task"])])
        if seconds_per_epoch is not None:
            rows.append(["s/epoch", *(f"{v:.2f}" for v in seconds_per_epoch)])
        return header, rows

    def summary(self) -> str:
        """``BWT mean ..; FWT mean ..`` (n/a where not defined)."""
        b, f = _fmt(self.bwt()["mean"], "+.4f"), _fmt(self.fwt()["mean"], "+.4f")
        return f"BWT mean {b or 'n/a'}; FWT mean {f or 'n/a (run with --with-single)'}"


def jsonable(obj):
    """``obj`` as plain JSON types (arrays and tensors via ``tolist``, anything else as ``str``)."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


@dataclass
class TrainMetrics:
    """``RUN_DIR/metrics.json``. R_detail[i][j]: every ranking metric of task j after task i.

    references: per next_query task, the training-free rankers of :mod:`querylearn.heuristics`
    (recent-distinct, recency-frequency, most-popular) on the same test rows as R, each with every
    ranking metric and ``n``: ``{task: {name: {"mrr@5": ..., ..., "n": ...}}}`` (None in files
    written before it existed).
    """

    strategy: str
    tasks: list[str]
    metric: list[str]
    R: list[Row]
    R_detail: list[list[dict]]
    single: Row | None
    fwt: dict
    bwt: dict
    seconds_per_epoch: list[float]
    epochs: list[int]
    best_epoch: list[int]
    skipped_steps: list[int]
    seed: int
    device: str
    data: str
    references: dict | None = None
    kind: str = METRICS_KIND
    schema_version: int = METRICS_SCHEMA_VERSION
    querylearn_version: str = __version__

    # the file's key order (kind first): schema_version 1's keys, then "references" (added later,
    # optional when read)
    _ORDER = ("kind", "schema_version", "querylearn_version", "strategy", "tasks", "metric", "R", "R_detail",
              "single", "fwt", "bwt", "seconds_per_epoch", "epochs", "best_epoch", "skipped_steps", "seed",
              "device", "data", "references")
    _OPTIONAL = ("references",)

    @classmethod
    def build(cls, r: RMatrix, *, strategy: str, R_detail: list, per_task: list[dict], seed: int,
              device: str, data: str, references: dict | None = None) -> TrainMetrics:
        """The run's metrics from its R matrix and per-task training summaries."""
        return cls(
            strategy=strategy,
            tasks=list(r.tasks),
            metric=list(r.metric),
            R=r.R,
            R_detail=R_detail,
            single=r.single,
            fwt=r.fwt(),
            bwt=r.bwt(),
            seconds_per_epoch=[p["seconds_per_epoch"] for p in per_task],
            epochs=[p["epochs"] for p in per_task],
            best_epoch=[p["best_epoch"] for p in per_task],
            skipped_steps=[p["skipped_steps"] for p in per_task],
            seed=seed,
            device=device,
            data=data,
            references=references,
        )

    @property
    def r_matrix(self) -> RMatrix:
        return RMatrix(self.tasks, self.metric, self.R, self.single)

    def reference_tables(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """Per next_query task with references: (task, header, rows) comparing the model (right after
        the task and after the last task learnt) with the training-free rankers on the same rows."""
        out = []
        for task, refs in (self.references or {}).items():
            if task not in self.tasks:
                continue
            j = self.tasks.index(task)
            header = [f"{task} test rows (n)", *REFERENCE_COLUMNS]
            learnt = [(i, row[j]) for i, row in enumerate(self.R_detail) if j < len(row)]
            ends = learnt[:1] + learnt[-1:] if len(learnt) > 1 else learnt
            models = [(f"model after {self.tasks[i]}", d) for i, d in ends]
            rows = [[f"{label} ({d.get('n', '')})", *(_fmt(d.get(c)) for c in REFERENCE_COLUMNS)]
                    for label, d in models]
            for name, m in refs.items():
                rows.append([f"{name} (no model)", *(_fmt(m.get(c)) for c in REFERENCE_COLUMNS)])
            out.append((task, header, rows))
        return out

    def to_dict(self) -> dict:
        return jsonable({k: getattr(self, k) for k in self._ORDER})

    @classmethod
    def from_dict(cls, data: dict, where: str | Path = "metrics.json") -> TrainMetrics:
        if data.get("kind") != METRICS_KIND:
            raise ArtifactError(f"{where}: expected kind '{METRICS_KIND}', found {data.get('kind')!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data) - set(cls._OPTIONAL))
        if missing:
            raise ArtifactError(f"{where}: missing fields {', '.join(missing)} (re-run train-sequence)")
        return cls(**{k: data[k] for k in names if k in data})

    def write(self, run_dir: Path) -> None:
        """``metrics.json`` and ``R.csv`` (atomically)."""
        write_json(run_dir / "metrics.json", self.to_dict())
        atomic_write_bytes(run_dir / "R.csv", self.r_matrix.csv().encode("utf-8"))

    @classmethod
    def read(cls, run_dir: str | Path) -> TrainMetrics:
        path = Path(run_dir) / "metrics.json"
        return cls.from_dict(read_json(path), path)


def write_masks(run_dir: Path, tasks: list[str], masks: np.ndarray, smax: float) -> None:
    """``masks.npz``: tasks [N] (str), masks [N, M, C] float32 at s = ``smax``, smax [1] float64."""
    write_npz(run_dir / MASKS_FILE, tasks=np.array(tasks), masks=masks.astype(np.float32),
              smax=np.array([smax], dtype=np.float64))


def read_masks(run_dir: Path) -> tuple[list[str], np.ndarray] | None:
    """(task names, masks [N, M, C]) from ``masks.npz``, or None when the run wrote none."""
    path = Path(run_dir) / MASKS_FILE
    if not path.is_file():
        return None
    data = read_npz(path)
    return [str(t) for t in data["tasks"]], data["masks"]


def write_ranks(run_dir: Path, ranks: dict[str, np.ndarray]) -> None:
    """``ranks.npz`` (see the module docstring), members in a fixed (sorted) order."""
    write_npz(Path(run_dir) / RANKS_FILE, **{k: ranks[k] for k in sorted(ranks)})


def read_ranks(run_dir: Path) -> dict[str, np.ndarray] | None:
    """The arrays of ``ranks.npz``, or None for runs written before it."""
    path = Path(run_dir) / RANKS_FILE
    return read_npz(path) if path.is_file() else None
