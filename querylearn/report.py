"""``querylearn report``: tables and figures from train-sequence runs and coldstart-eval reports.

Reads only artifacts, found at most 3 levels below the given directory:

- runs: ``metrics.json`` (+ ``ranks.npz`` for intervals, ``logs/*.jsonl`` for the curves and, for
  TERACON, ρ per past task and each task's mask sparsity over training, ``masks.npz`` for the task
  relations, ``config.toml``/``run.json`` to group seeds and find the
  embed-init table, the last checkpoint's ``item_embedding.weight`` for the nearest queries);
- cold-start reports: ``report.json`` (+ ``ranks.npz`` for intervals);
- user vectors: Parquet files written by ``export-users`` (the PCA picture);
- the dataset directory the runs name (label counts for the majority-class / most-popular
  references and the users' labels; vocabulary for the nearest queries).

The report is a list of :class:`Section` (text, tables, figures), rendered three ways: ``report.md``,
the console (rich tables on a terminal, plain complete tables otherwise) and JSON (``--json``).
Figures are plain functions returning a matplotlib ``Figure``; per-run figures are listed in
``RUN_FIGURES`` (add a function there to add a figure to every run's section).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from querylearn import report_maths as rm
from querylearn.artifacts import atomic_write_bytes, read_json, read_npz
from querylearn.continual.results import METRICS_KIND, TrainMetrics, read_masks, read_ranks
from querylearn.errors import QuerylearnError
from querylearn.recsys.report import text_rows as coldstart_rows  # the one cold-start row builder

USER_VECTORS_KIND = "user-representations"
MAX_PCA_POINTS = 2000
N_FREQUENT_QUERIES = 5
N_NEIGHBOURS = 5


# ---------------------------------------------------------------- inputs


@dataclass
class RunInfo:
    name: str
    path: Path
    metrics: TrainMetrics
    raw: dict = field(default_factory=dict)  # metrics.json as read (fields of later versions too)
    ranks: dict[str, np.ndarray] | None = None  # ranks.npz
    group: str = ""  # runs that differ only in their seed share it

    @property
    def references(self) -> dict:
        """Training-free rankers of next_query tasks written by train-sequence (``references``)."""
        return self.raw.get("references") or {}


@dataclass
class ColdstartInfo:
    name: str
    path: Path
    report: dict
    ranks: tuple[list[str], np.ndarray, np.ndarray] | None = None  # methods, ranks [M, N], cold [N]


@dataclass
class UserVectorsInfo:
    name: str
    path: Path
    meta: dict


@dataclass
class ReportInputs:
    runs: list[RunInfo] = field(default_factory=list)
    coldstart: list[ColdstartInfo] = field(default_factory=list)
    user_vectors: list[UserVectorsInfo] = field(default_factory=list)
    dataset_dir: Path | None = None

    # alias kept for callers of the earlier tuple form
    @property
    def coldstart_reports(self) -> list[tuple[str, Path, dict]]:
        return [(c.name, c.path, c.report) for c in self.coldstart]


def _label(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if path != root else Path(path.name)
    return str(rel).replace("\\", "/")


def _seed_group(run_dir: Path, metrics: TrainMetrics) -> str:
    """A key equal for runs whose stored config differs only in ``seed``."""
    cfg: dict = {}
    if (run_dir / "config.toml").is_file():
        cfg = tomllib.loads((run_dir / "config.toml").read_text(encoding="utf-8"))
    cfg.pop("seed", None)
    emb = None
    if (run_dir / "run.json").is_file():
        emb = read_json(run_dir / "run.json").get("embeddings")
    return json.dumps(
        [metrics.strategy, metrics.tasks, cfg, emb and Path(emb).name], sort_keys=True, default=str
    )


def _user_vector_meta(path: Path) -> dict | None:
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:  # not a Parquet file we can read: not ours
        return None
    raw = meta.get(b"querylearn")
    if raw is None:
        return None
    info = json.loads(raw)
    return info if info.get("kind") == USER_VECTORS_KIND else None


def discover(root: str | Path) -> ReportInputs:
    """Find runs (``metrics.json``), coldstart reports (``report.json``) and user-vector Parquet files
    at most 3 levels below ``root``, and the dataset directory they were built from."""
    root = Path(root)
    if not root.is_dir():
        raise QuerylearnError(f"{root}: not a directory; pass a run directory or a demo output directory")
    found = ReportInputs()
    for depth in range(4):
        stars = ["*"] * depth
        for m in sorted(root.glob("/".join([*stars, "metrics.json"]))):
            data = read_json(m)
            if isinstance(data, dict) and data.get("kind") == METRICS_KIND:
                metrics = TrainMetrics.from_dict(data, m)
                found.runs.append(
                    RunInfo(
                        _label(m.parent, root),
                        m.parent,
                        metrics,
                        data,
                        read_ranks(m.parent),
                        _seed_group(m.parent, metrics),
                    )
                )
        for r in sorted(root.glob("/".join([*stars, "report.json"]))):
            data = read_json(r)
            if data.get("kind") == "coldstart_report":
                ranks = None
                if (r.parent / "ranks.npz").is_file():
                    z = read_npz(r.parent / "ranks.npz")
                    ranks = ([str(x) for x in z["methods"]], z["ranks"], z["cold"].astype(bool))
                found.coldstart.append(ColdstartInfo(_label(r.parent, root), r.parent, data, ranks))
        for p in sorted(root.glob("/".join([*stars, "*.parquet"]))):
            meta = _user_vector_meta(p)
            if meta is not None:
                found.user_vectors.append(UserVectorsInfo(_label(p, root), p, meta))
    if not found.runs and not found.coldstart:
        raise QuerylearnError(
            f"{root}: no metrics.json (train-sequence) or report.json (coldstart-eval) found within 3 levels"
        )
    candidates = [root / "data", root] + [Path(r.metrics.data) for r in found.runs]
    candidates += [Path(c.report["dataset"]) for c in found.coldstart if c.report.get("dataset")]
    found.dataset_dir = next((c for c in candidates if (c / "dataset.json").is_file()), None)
    return found


# ---------------------------------------------------------------- numbers


def _fmt(v, spec: str = ".4f") -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def _fmt_ci(v, ci) -> str:
    """``0.1533 [0.139, 0.168]`` (the point, then the 95% bootstrap interval)."""
    if v is None:
        return ""
    return _fmt(v) if ci is None else f"{_fmt(v)} [{ci[0]:.3f}, {ci[1]:.3f}]"


def r_intervals(run: RunInfo) -> list[list[tuple[float, float] | None]]:
    """95% bootstrap interval (resampling test users) of every R entry that has per-row ranks."""
    m = run.metrics
    out: list[list[tuple[float, float] | None]] = []
    for i, row in enumerate(m.R):
        cis: list[tuple[float, float] | None] = []
        for j, v in enumerate(row):
            key = f"R_{i}_{j}"
            if v is None or run.ranks is None or key not in run.ranks:
                cis.append(None)
                continue
            vals = rm.per_row_metric(run.ranks[key], m.metric[j])
            cis.append(rm.bootstrap_ci(vals, run.ranks.get(f"users_{j}"), seed=1000 * i + j))
        out.append(cis)
    return out


class DatasetReferences:
    """Reference scores of each task from the dataset's label counts (no model): the majority class
    (classify) or most-popular label (multi_target) by training frequency, and chance."""

    def __init__(self, dataset_dir: Path | None):
        self.ds = None
        if dataset_dir is not None:
            from querylearn.data.dataset import load_dataset

            self.ds = load_dataset(dataset_dir)

    def task(self, name: str):
        if self.ds is None or name not in self.ds.task_names:
            return None
        return self.ds.task(name)

    def scores(self, name: str, metric: str) -> dict[str, float]:
        """{"majority class" | "most-popular": value, "chance": value} for the task's test rows."""
        t = self.task(name)
        if t is None:
            return {}
        out: dict[str, float] = {}
        n_classes = len(self.ds.vocab) if t.kind == "next_query" else int(t.n_labels)
        if t.kind in ("classify", "multi_target"):
            train, test = t.rows("train"), t.rows("test")
            if len(test):
                ranks = rm.popularity_ranks(t.label[train], t.label[test], n_classes)
                label = "majority class" if t.kind == "classify" else "most-popular"
                out[label] = float(rm.per_row_metric(ranks, metric).mean())
        out["chance"] = rm.chance_score(metric, n_classes)
        return out


def task_references(run: RunInfo, refs: DatasetReferences) -> dict[str, dict[str, float]]:
    """Per task of the run: reference name -> score on the task's metric (dataset references, then
    the run's recorded next-query heuristics)."""
    m = run.metrics
    out: dict[str, dict[str, float]] = {}
    for task, metric in zip(m.tasks, m.metric, strict=True):
        scores = refs.scores(task, metric)
        for name, values in (run.references.get(task) or {}).items():
            if isinstance(values, dict) and values.get(metric) is not None:
                scores[f"{name} (heuristic)"] = float(values[metric])
        out[task] = scores
    return out


def coldstart_intervals(info: ColdstartInfo) -> dict[str, dict[str, dict[str, tuple[float, float] | None]]]:
    """method -> group -> metric -> 95% bootstrap interval over the group's users."""
    from querylearn.recsys.evaluate import METRIC_NAMES

    out: dict = {}
    if info.ranks is None:
        return out
    names, ranks, cold = info.ranks
    for k, name in enumerate(names):
        out[name] = {}
        for group, sel in (("warm", ~cold), ("cold", cold), ("all", np.ones_like(cold))):
            out[name][group] = {
                metric: rm.bootstrap_ci(rm.per_row_metric(ranks[k][sel], metric), seed=k)
                for metric in METRIC_NAMES
            }
    return out


def coldstart_chance(report: dict) -> dict[str, float]:
    """HR@k / NDCG@10 of a random order of the 1 + negatives candidates."""
    from querylearn.recsys.evaluate import METRIC_NAMES

    return {m: rm.chance_score(m, 1 + int(report["negatives"])) for m in METRIC_NAMES}


# ---------------------------------------------------------------- tables


Table = tuple[str, list[str], list[list[str]]]  # title, header, rows (strings)


def r_matrix_rows(metrics: TrainMetrics) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the R matrix with BWT and FWT per task (:meth:`RMatrix.table`)."""
    return metrics.r_matrix.table()


def r_matrix_table(run: RunInfo) -> tuple[list[str], list[list[str]]]:
    """The R matrix with a 95% bootstrap interval in every learnt cell (when ranks.npz exists)."""
    header, rows = r_matrix_rows(run.metrics)
    cis = r_intervals(run)
    for i, row in enumerate(run.metrics.R):
        rows[i] = [rows[i][0], *(_fmt_ci(v, cis[i][j]) for j, v in enumerate(row))]
    return header, rows


def _groups(runs: list[RunInfo]) -> list[list[RunInfo]]:
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        out.setdefault(r.group or r.name, []).append(r)
    return list(out.values())


def seed_study_rows(
    runs: list[RunInfo], refs: DatasetReferences | None = None
) -> tuple[list[str], list[list[str]]]:
    """Tasks x methods: R(T_last, T_i), mean, BWT, FWT per method (a method = runs that differ only
    in their seed: mean ± std over seeds; one run: the 95% bootstrap interval), then reference rows
    (majority class / most-popular, chance, next-query heuristics). FWT is left out when no run has
    single-model scores."""
    tasks: list[str] = []
    for r in runs:
        tasks += [t for t in r.metrics.tasks if t not in tasks]
    has_fwt = any(r.metrics.fwt.get("mean") is not None for r in runs)
    header = ["method", *tasks, "mean", "BWT", *(["FWT"] if has_fwt else [])]
    rows = []
    for group in _groups(runs):
        first = group[0]
        if len(group) == 1:
            cis = r_intervals(first)[-1]
            last = first.metrics.R[-1]
            by_task = {
                t: _fmt_ci(v, cis[j]) for j, (t, v) in enumerate(zip(first.metrics.tasks, last, strict=True))
            }
            vals = [v for v in last if v is not None]
            cells = [
                first.name,
                *(by_task.get(t, "") for t in tasks),
                _fmt(float(np.mean(vals)) if vals else None),
                _fmt(first.metrics.bwt.get("mean"), "+.4f"),
            ]
            if has_fwt:
                cells.append(_fmt(first.metrics.fwt.get("mean"), "+.4f"))
        else:

            def ms(values: list[float | None], spec: str = ".4f") -> str:
                vals = [v for v in values if v is not None]
                if not vals:
                    return ""
                mean, std = rm.mean_std(vals)
                return f"{format(mean, spec)} ± {std:.4f}"

            per_task = {
                t: ms([dict(zip(r.metrics.tasks, r.metrics.R[-1], strict=True)).get(t) for r in group])
                for t in tasks
            }
            means = [float(np.mean([v for v in r.metrics.R[-1] if v is not None])) for r in group]
            cells = [
                f"{first.metrics.strategy} ({len(group)} seeds: {', '.join(r.name for r in group)})",
                *(per_task[t] for t in tasks),
                ms(means),
                ms([r.metrics.bwt.get("mean") for r in group], "+.4f"),
            ]
            if has_fwt:
                cells.append(ms([r.metrics.fwt.get("mean") for r in group], "+.4f"))
        rows.append(cells)
    if refs is not None and runs:
        by_name: dict[str, dict[str, float]] = {}
        for r in runs:
            for task, scores in task_references(r, refs).items():
                for name, v in scores.items():
                    by_name.setdefault(name, {}).setdefault(task, v)
        for name, per_task in by_name.items():
            rows.append(
                [
                    f"reference: {name}",
                    *(_fmt(per_task.get(t)) for t in tasks),
                    "",
                    "",
                    *([""] if has_fwt else []),
                ]
            )
    return header, rows


def coldstart_table(info: ColdstartInfo) -> tuple[list[str], list[list[str]]]:
    """The cold-start rows with a 95% bootstrap interval per metric, then the chance row."""
    from querylearn.recsys.evaluate import METRIC_NAMES

    header, rows = coldstart_rows(info.report)
    cis = coldstart_intervals(info)
    for row in rows:
        ci = cis.get(row[0], {}).get(row[1], {})
        for k, metric in enumerate(METRIC_NAMES):
            cell = row[3 + k]
            if cell and ci.get(metric) is not None:
                lo, hi = ci[metric]
                row[3 + k] = f"{cell} [{lo:.3f}, {hi:.3f}]"
    chance = coldstart_chance(info.report)
    rows.append(
        [
            f"reference: chance (random order of 1 + {info.report['negatives']})",
            "any",
            "",
            *(_fmt(chance[m]) for m in METRIC_NAMES),
        ]
    )
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(c: str) -> str:
        return c.replace("|", "\\|")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def plain_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A complete fixed-width text table (no truncation, any width): for pipes and log files."""
    from rich.cells import cell_len  # Hangul takes two terminal cells

    widths = [max(cell_len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]

    def pad(text: str, width: int, left: bool) -> str:
        fill = " " * (width - cell_len(text))
        return text + fill if left else fill + text

    def line(cells: list[str]) -> str:
        return "  ".join(
            pad(str(c), w, i == 0) for i, (c, w) in enumerate(zip(cells, widths, strict=False))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(header), sep, *(line(r) for r in rows)])


def rich_table(title: str, header: list[str], rows: list[list[str]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, h in enumerate(header):
        table.add_column(escape(h), justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        table.add_row(*(escape(c) for c in r))
    return table


# ---------------------------------------------------------------- maths kept here for compatibility


def mask_similarity(masks: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of tasks' concatenated masks (docs/algorithms.md#task-relations).

    masks: [N, M, C] (tasks, masked layers, channels) -> [N, N].
    """
    flat = masks.reshape(masks.shape[0], -1).astype(np.float64)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.maximum(norm, 1e-12)
    return unit @ unit.T


def learning_curves(run_dir: Path, metrics: TrainMetrics) -> dict[str, list[tuple[int, float]]]:
    """Per task: (epoch, validation value of the task's metric) from ``logs/NN-TASK.jsonl``."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for task, metric in zip(metrics.tasks, metrics.metric, strict=True):
        logs = sorted((run_dir / "logs").glob(f"[0-9][0-9]-{task}.jsonl"))
        points = []
        for log in logs:
            for line in log.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                valid = rec.get("valid", {})
                if isinstance(valid, dict) and task in valid and isinstance(valid[task], dict):
                    valid = valid[task]
                value = valid.get(metric) if isinstance(valid, dict) else None
                if value is not None:
                    points.append((len(points) + 1, float(value)))
        curves[task] = points
    return curves


def mechanism_series(run_dir: Path, metrics: TrainMetrics) -> list[dict]:
    """TERACON's per-epoch mechanism records from ``logs/NN-TASK.jsonl`` in training order.

    One entry per epoch that logged masks: {"step": 1-based epoch over the whole run, "task": the
    task being learnt, "rho": {past task: mean ρ over the epoch}, "off": {task: fraction of channels
    below 0.5 at smax, mean over layers}}. Empty for strategies that log neither.
    """
    out: list[dict] = []
    for position, task in enumerate(metrics.tasks):
        log = run_dir / "logs" / f"{position + 1:02d}-{task}.jsonl"
        if not log.is_file():
            continue
        for line in log.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "mask_off" not in rec and "rho_mean" not in rec:
                continue
            off = {t: float(np.mean(v)) for t, v in rec.get("mask_off", {}).items()}
            out.append({"step": len(out) + 1, "task": task, "rho": dict(rec.get("rho_mean", {})), "off": off})
    return out


# ---------------------------------------------------------------- figures (each returns a Figure)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Hangul needs a font that has it (e.g. Noto Sans CJK, Nanum): DejaVu Sans first, such fonts as fallback
    korean = sorted(
        {
            f.name
            for f in font_manager.fontManager.ttflist
            if any(k in f.name for k in ("CJK", "Nanum", "Noto Sans KR", "Malgun", "Apple SD Gothic"))
        }
    )
    plt.rcParams["font.family"] = ["DejaVu Sans", *korean]
    return plt


def _renderable(text: str) -> bool:
    """Whether the figure fonts have a glyph for every character of ``text``."""
    if text.isascii():
        return True
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    plt = _plt()
    fonts = [
        FT2Font(font_manager.findfont(font_manager.FontProperties(family=name), fallback_to_default=False))
        for name in plt.rcParams["font.family"]
        if name
    ]
    return all(any(f.get_char_index(ord(c)) for f in fonts) for c in text if not c.isspace())


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as PNG (atomically) and close it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _matrix(rows: list[list[float | None]], n: int) -> np.ndarray:
    return np.array(
        [[np.nan if v is None else v for v in (list(row) + [None] * n)[:n]] for row in rows], dtype=float
    )


def fig_r_matrix(metrics: TrainMetrics, title: str, column_ref: list[float | None] | None = None):
    """R heatmap; colour = score / the task's reference (best score of that task in the report or its
    single-model score), on a fixed 0..1 scale shared by every run; cells print the raw score."""
    plt = _plt()
    tasks = metrics.tasks
    R = _matrix(metrics.R, len(tasks))
    ref = np.array([np.nan if v is None else v for v in (column_ref or [None] * len(tasks))], dtype=float)
    fallback = np.nanmax(np.where(np.isnan(R), -np.inf, R), axis=0)  # the run's own best per column
    ref = np.where(np.isnan(ref) | (ref <= 0), fallback, ref)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = R / np.where(ref > 0, ref, np.nan)[None, :]
    rel = np.where(~np.isnan(R) & np.isnan(rel), 0.0, rel)  # a task nobody scores on: all zero
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(tasks), 1.2 + 0.55 * len(R)))
    im = ax.imshow(rel, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i in range(R.shape[0]):
        for j in range(R.shape[1]):
            if not np.isnan(R[i, j]):
                ax.text(
                    j,
                    i,
                    f"{R[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rel[i, j] < 0.6 else "black",
                )
    ax.set_xticks(
        range(len(tasks)), [f"{t}\n{m}" for t, m in zip(tasks, metrics.metric, strict=True)], fontsize=7
    )
    ax.set_yticks(range(R.shape[0]), [f"after {t}" for t in tasks[: R.shape[0]]], fontsize=7)
    ax.set_xlabel("evaluated on (task, metric)")
    ax.set_ylabel("model after learning")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("score / task's best in this report", fontsize=7)
    fig.tight_layout()
    return fig


def fig_forgetting(runs: list[RunInfo], references: dict[str, dict[str, float]], title: str):
    """One panel per task: its test score after each task of the sequence, one line per method
    (runs differing only in seed: mean with a ±std band; one run: a 95% bootstrap band), the
    single-model score as a marker and the reference scores as horizontal lines."""
    plt = _plt()
    tasks: list[str] = []
    metric_of: dict[str, str] = {}
    for r in runs:
        for t, m in zip(r.metrics.tasks, r.metrics.metric, strict=True):
            if t not in tasks:
                tasks.append(t)
                metric_of[t] = m
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.5 * nrows + 0.6), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ref_styles = [":", "--", "-.", (0, (1, 3)), (0, (5, 5))]
    ref_style: dict[str, Any] = {}  # one line style per reference name across panels
    groups = _groups(runs)
    for k, task in enumerate(tasks):
        ax = axes[k // ncols][k % ncols]
        for g, group in enumerate(groups):
            m0 = group[0].metrics
            if task not in m0.tasks:
                continue
            j = m0.tasks.index(task)
            xs = list(range(j, len(m0.R)))
            series = np.array(
                [[r.metrics.R[i][j] if r.metrics.R[i][j] is not None else np.nan for i in xs] for r in group],
                dtype=float,
            )
            mean = np.nanmean(series, axis=0)
            colour = colours[g % len(colours)]
            label = group[0].name if len(group) == 1 else f"{m0.strategy} ({len(group)} seeds)"
            ax.plot(xs, mean, marker="o", ms=3, color=colour, label=label)
            if len(group) > 1:
                std = np.nanstd(series, axis=0, ddof=1)
                ax.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
            else:
                cis = r_intervals(group[0])
                lo = [cis[i][j][0] if cis[i][j] else np.nan for i in xs]
                hi = [cis[i][j][1] if cis[i][j] else np.nan for i in xs]
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)
                if len(xs) == 1 and not np.isnan(lo[0]):  # a band of one point is invisible: an error bar
                    ax.errorbar(
                        xs,
                        mean,
                        yerr=[[mean[0] - lo[0]], [hi[0] - mean[0]]],
                        color=colour,
                        capsize=3,
                        ls="none",
                    )
            if m0.single is not None and j < len(m0.single) and m0.single[j] is not None:
                ax.plot([j], [m0.single[j]], marker="*", ms=8, color=colour, ls="none")
        for name, value in references.get(task, {}).items():
            style = ref_style.setdefault(name, ref_styles[len(ref_style) % len(ref_styles)])
            ax.axhline(value, color="grey", lw=0.9, ls=style, label=f"reference: {name}")
        ax.set_xticks(range(len(tasks)), [f"{t}" for t in tasks], fontsize=7)
        ax.set_xlim(-0.3, len(tasks) - 0.7)
        ax.set_title(f"{task} ({metric_of[task]})", fontsize=8)
        ax.set_xlabel("after learning", fontsize=7)
        ax.set_ylabel(metric_of[task], fontsize=7)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    for k in range(len(tasks), nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    legend: dict[str, Any] = {}  # one legend for the page: every method and reference once
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    n_leg_rows = math.ceil(len(legend) / 4)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=4, fontsize=7, frameon=False)
    fig.suptitle(
        title + " (bands: 95% bootstrap interval, or ±std over seeds; star: single-model score)", fontsize=9
    )
    fig.tight_layout(rect=(0, (0.2 * n_leg_rows + 0.15) / fig.get_figheight(), 1, 1))
    return fig


def fig_curves(curves: dict[str, list[tuple[int, float]]], metrics: TrainMetrics, title: str):
    """Validation score per epoch, one panel per task with its own y-axis (the metrics' ranges differ
    by two orders of magnitude); the epoch early stopping kept is marked."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    tasks = list(metrics.tasks)
    ncols = min(4, max(1, len(tasks)))
    nrows = math.ceil(len(tasks) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.4 * nrows + 0.4), squeeze=False)
    for k, (task, metric) in enumerate(zip(tasks, metrics.metric, strict=True)):
        ax = axes[k // ncols][k % ncols]
        pts = curves.get(task, [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
            best = metrics.best_epoch[k] if k < len(metrics.best_epoch) else None
            if best is not None and 1 <= best <= len(pts):
                ax.plot([best], [pts[best - 1][1]], marker="*", ms=9, color="tab:red", ls="none")
        ax.set_title(f"{task} ({metric})", fontsize=8)
        ax.set_xlabel("epoch of the task", fontsize=7)
        ax.set_ylabel(f"validation {metric}", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
    for k in range(len(tasks), nrows * ncols):
        axes[k // ncols][k % ncols].set_axis_off()
    fig.suptitle(title + " (star: the epoch kept)", fontsize=9)
    fig.tight_layout()
    return fig


def fig_similarity(names: list[str], sim: np.ndarray, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.4 + 0.7 * len(names), 1.0 + 0.6 * len(names)))
    # masks at smax are close to 1 in most channels, so the colour scale starts at the smallest value
    im = ax.imshow(sim, vmin=float(sim.min()), vmax=1.0, cmap="magma")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{sim[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if sim[i, j] < (1.0 + float(sim.min())) / 2 else "black",
            )
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("task")
    ax.set_ylabel("task")
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("cosine similarity", fontsize=7)
    fig.tight_layout()
    return fig


def _task_spans(ax, series: list[dict]) -> None:
    """Shade every second task's epochs and name each task above its span."""
    spans: list[list] = []  # [task, first step, last step]
    for r in series:
        if spans and spans[-1][0] == r["task"]:
            spans[-1][2] = r["step"]
        else:
            spans.append([r["task"], r["step"], r["step"]])
    for i, (task, first, last) in enumerate(spans):
        if i % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
        ax.text(
            (first + last) / 2, 1.0, task, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
            fontsize=7,
        )


def fig_mechanism(series: list[dict], title: str):
    """ρ per past task (log scale) and every task's fraction of channels switched off at smax,
    per epoch over the whole run (TERACON's mechanism, docs/train-sequence.md "Logs")."""
    plt = _plt()
    fig, (ax_rho, ax_off) = plt.subplots(2, 1, figsize=(7, 5.2), sharex=True)
    steps = [r["step"] for r in series]
    past = [t for t in dict.fromkeys(k for r in series for k in r["rho"])]
    for t in past:
        pts = [(r["step"], r["rho"][t]) for r in series if t in r["rho"]]
        ax_rho.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"ρ {t}")
    if past:
        ax_rho.set_yscale("log")
        ax_rho.axhline(0.0025, color="0.5", lw=0.8, ls=":")  # 1 - σ(6): every mask alike
        ax_rho.legend(fontsize=7, ncol=3)
    ax_rho.set_ylabel("ρ (mean over the epoch)")
    ax_rho.set_xlabel("epoch over the run")
    for t in dict.fromkeys(k for r in series for k in r["off"]):
        pts = [(r["step"], r["off"][t]) for r in series if t in r["off"]]
        ax_off.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=t)
    ax_off.set_ylabel("channels off (mask < 0.5)")
    ax_off.set_xlabel("epoch over the run")
    ax_off.set_ylim(-0.02, 1.02)
    ax_off.legend(fontsize=7, ncol=4)
    if steps:
        _task_spans(ax_rho, series)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_mechanism(series: list[dict], title: str, path: Path) -> Path:
    """:func:`fig_mechanism` written to ``path``."""
    return save_figure(fig_mechanism(series, title), path)


def fig_coldstart(info: ColdstartInfo):
    """HR@1/5/10 and NDCG@10 per method, warm and cold users side by side, with 95% bootstrap
    intervals and the chance level of a random order of the candidates."""
    from querylearn.recsys.evaluate import METRIC_NAMES

    plt = _plt()
    report = info.report
    methods = list(report["methods"])
    groups = ("warm", "cold")
    cis = coldstart_intervals(info)
    chance = coldstart_chance(report)
    n_leg_rows = math.ceil(len(methods) / 3)
    fig, axes = plt.subplots(1, len(METRIC_NAMES), figsize=(3.0 * len(METRIC_NAMES), 3.4 + 0.22 * n_leg_rows))
    width = 0.8 / max(1, len(methods))
    for ax, k in zip(axes, METRIC_NAMES, strict=True):
        top = chance[k]  # each panel's own scale (HR@1 is small), from 0 to the highest bar or interval
        for m, name in enumerate(methods):
            vals = [report["methods"][name][g][k] or 0.0 for g in groups]
            err = None
            if name in cis:
                lo = [vals[i] - (cis[name][g][k] or (vals[i], vals[i]))[0] for i, g in enumerate(groups)]
                hi = [(cis[name][g][k] or (vals[i], vals[i]))[1] - vals[i] for i, g in enumerate(groups)]
                err = [lo, hi]
                top = max(top, *(v + h for v, h in zip(vals, hi, strict=True)))
            top = max(top, *vals)
            ax.bar(
                np.arange(len(groups)) + m * width,
                vals,
                width,
                yerr=err,
                capsize=1.5,
                error_kw={"lw": 0.7},
                label=name,
            )
        ax.axhline(chance[k], color="black", ls="--", lw=0.9, label="chance (random order)")
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, list(groups))
        ax.set_xlabel("users")
        ax.set_ylabel(k.upper())
        ax.set_ylim(0, min(1.0, top * 1.12) if top > 0 else 1.0)
        ax.set_title(k.upper(), fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=6.5, frameon=False)
    c = report["counts"]
    fig.suptitle(
        f"cold-start ranking of the held-out item among 1 + {report['negatives']} candidates "
        f"({c['n_warm']} warm, {c['n_cold']} cold users; bars: 95% bootstrap intervals)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.055 * (n_leg_rows + 1), 1, 1))
    return fig


def fig_user_pca(vectors: np.ndarray, labels: np.ndarray, label_names: list[str], title: str, task: str):
    """2-D PCA of user vectors [N, D], each user coloured by its label in a classify task."""
    plt = _plt()
    coords, ratio = rm.pca_2d(vectors)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    cmap = plt.get_cmap("tab10")
    for c in np.unique(labels):
        sel = labels == c
        name = label_names[c] if c < len(label_names) and _renderable(label_names[c]) else f"class {c}"
        ax.scatter(
            coords[sel, 0],
            coords[sel, 1],
            s=5,
            alpha=0.6,
            color=cmap(int(c) % 10),
            label=f"{name} ({int(sel.sum())})",
        )
    ax.set_xlabel(f"PC1 ({ratio[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({ratio[1]:.0%} of variance)")
    ax.set_title(title, fontsize=8)
    ax.legend(title=f"{task} label", fontsize=6, title_fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- user space and nearest queries


def pca_inputs(info: UserVectorsInfo, refs: DatasetReferences, max_tasks: int = 2):
    """[(task, vectors [n, D], labels [n], label names)] for the classify tasks of the vectors'
    dataset (users with a label; at most MAX_PCA_POINTS, seeded sample)."""
    from querylearn.recsys.representations import read_user_parquet

    ds = refs.ds
    if ds is None:
        return []
    rep = read_user_parquet(info.path)
    row_of = {u: i for i, u in enumerate(rep.user_ids)}
    out = []
    for t in [t for t in ds.tasks if t.kind == "classify"][-max_tasks:]:
        users = [ds.user_ids[u] for u in t.user_index]
        keep = np.array([u in row_of for u in users], dtype=bool)
        if keep.sum() < 3:
            continue
        rows = np.array([row_of[u] for u, k in zip(users, keep, strict=True) if k])
        labels = np.asarray(t.label)[keep]
        if len(rows) > MAX_PCA_POINTS:
            pick = np.sort(np.random.default_rng(0).choice(len(rows), MAX_PCA_POINTS, replace=False))
            rows, labels = rows[pick], labels[pick]
        out.append((t.name, rep.vectors[rows], labels, list(t.label_names)))
    return out


def _checkpoint_item_embedding(run: RunInfo) -> np.ndarray | None:
    from safetensors import safe_open

    paths = sorted((run.path / "checkpoints").glob("*.safetensors"))
    if not paths:
        return None
    with safe_open(str(paths[-1]), framework="np") as f:
        return f.get_tensor("item_embedding.weight") if "item_embedding.weight" in f.keys() else None


def nearest_queries_table(
    runs: list[RunInfo], refs: DatasetReferences
) -> tuple[list[str], list[list[str]]] | None:
    """The most frequent queries and their nearest queries (cosine) in the input embedding table
    before training (the embed-init table of the first run that has one) and in each run's trained
    input embedding after its last task."""
    ds = refs.ds
    if ds is None or not runs:
        return None
    vocab = list(ds.vocab.queries)
    counts = np.bincount(np.asarray(ds.sequences).ravel(), minlength=len(vocab))
    counts[:2] = 0  # <pad>, <unk>
    frequent = np.argsort(-counts, kind="stable")[:N_FREQUENT_QUERIES]
    frequent = frequent[counts[frequent] > 0]
    spaces: list[tuple[str, np.ndarray]] = []
    for r in runs:
        emb = read_json(r.path / "run.json").get("embeddings") if (r.path / "run.json").is_file() else None
        if emb and (Path(emb) / "vectors.npy").is_file():
            before = np.load(Path(emb) / "vectors.npy", allow_pickle=False)
            if before.shape[0] == len(vocab):
                spaces.append((f"before training ({Path(emb).name} table)", before))
                break
    for r in runs:
        after = _checkpoint_item_embedding(r)
        if after is not None and after.shape[0] == len(vocab):
            spaces.append((f"after training: {r.name}", after))
    if not spaces or not len(frequent):
        return None
    header = ["query (count)", *(name for name, _ in spaces)]
    neighbours = [rm.nearest_neighbours(v, frequent, N_NEIGHBOURS, np.array([0, 1])) for _, v in spaces]
    rows = []
    for qi, q in enumerate(frequent):
        rows.append(
            [f"{vocab[q]} ({int(counts[q])})", *(", ".join(vocab[n] for n in nb[qi]) for nb in neighbours)]
        )
    return header, rows


# ---------------------------------------------------------------- sections and rendering


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)  # caption, PNG path


@dataclass
class ReportContext:
    """What every figure function may use: the output folder, the references, the shared scale."""

    out: Path
    figs: Path
    refs: DatasetReferences
    column_ref: dict[str, float | None]  # task -> denominator of the normalised heatmaps


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "run"


def _run_r_matrix(run: RunInfo, ctx: ReportContext) -> tuple[str, str, Any] | None:
    ref = [ctx.column_ref.get(t) for t in run.metrics.tasks]
    fig = fig_r_matrix(
        run.metrics,
        f"R matrix: {run.name} ({run.metrics.strategy}); colour relative to "
        "each task's best score in this report",
        ref,
    )
    return (
        f"R_{_slug(run.name)}",
        "R matrix (colour: score / the task's best in this report; cells: raw scores)",
        fig,
    )


def _run_curves(run: RunInfo, ctx: ReportContext) -> tuple[str, str, Any] | None:
    curves = learning_curves(run.path, run.metrics)
    return (
        f"curves_{_slug(run.name)}",
        "validation curves",
        fig_curves(curves, run.metrics, f"validation score per epoch: {run.name}"),
    )


def _run_mechanism(run: RunInfo, ctx: ReportContext) -> tuple[str, str, Any] | None:
    series = mechanism_series(run.path, run.metrics)
    if not series:
        return None
    caption = (
        "Sampling ratio ρ of every past task and each task's fraction of channels switched off at smax, "
        "per epoch (from logs/)"
    )
    return f"mechanism_{_slug(run.name)}", caption, fig_mechanism(series, f"TERACON mechanism: {run.name}")


# Per-run figures: functions (run, context) -> (file stem, caption, Figure) or None. Add one here to
# put a figure into every run's section.
RUN_FIGURES: list[Callable[[RunInfo, ReportContext], tuple[str, str, Any] | None]] = [
    _run_r_matrix,
    _run_curves,
    _run_mechanism,
]


def _values(inputs: ReportInputs, refs: DatasetReferences) -> dict:
    """The numbers of the report as JSON (``--json``)."""
    runs = {}
    for r in inputs.runs:
        runs[r.name] = {
            "strategy": r.metrics.strategy,
            "tasks": r.metrics.tasks,
            "metric": r.metrics.metric,
            "R": r.metrics.R,
            "R_ci95": r_intervals(r),
            "single": r.metrics.single,
            "bwt": r.metrics.bwt,
            "fwt": r.metrics.fwt,
            "references": task_references(r, refs),
        }
    cold = {}
    for c in inputs.coldstart:
        cis = coldstart_intervals(c)
        cold[c.name] = {
            "counts": c.report["counts"],
            "negatives": c.report["negatives"],
            "chance": coldstart_chance(c.report),
            "methods": {
                name: {
                    g: {
                        **{k: v for k, v in m[g].items()},
                        **{f"{k}_ci95": (cis.get(name, {}).get(g, {}).get(k)) for k in m[g] if "@" in k},
                    }
                    for g in ("warm", "cold", "all")
                }
                for name, m in c.report["methods"].items()
            },
        }
    return {"runs": runs, "coldstart": cold}


def build_sections(inputs: ReportInputs, out: Path) -> tuple[list[Section], DatasetReferences]:
    """Every section of the report, figures written under ``out/figures``."""
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    refs = DatasetReferences(inputs.dataset_dir)
    columns: dict[str, list] = {}
    singles: dict[str, list] = {}
    for r in inputs.runs:
        for j, t in enumerate(r.metrics.tasks):
            columns.setdefault(t, []).extend(row[j] for row in r.metrics.R if j < len(row))
            if r.metrics.single is not None and j < len(r.metrics.single):
                singles.setdefault(t, []).append(r.metrics.single[j])
    names = list(columns)
    best = rm.column_reference(
        [columns[t] for t in names],
        [max((v for v in singles.get(t, []) if v is not None), default=None) for t in names],
    )
    ctx = ReportContext(out, figs, refs, dict(zip(names, best, strict=True)))
    sections: list[Section] = []

    if refs.ds is not None:
        mf = refs.ds.manifest
        sections.append(
            Section(
                "Dataset",
                [
                    f"Dataset: `{mf['source']}`{' (**synthetic**)' if mf.get('synthetic') else ''}, "
                    f"{mf['n_users']:,} users, "
                    f"vocabulary {mf['vocab_size']:,}, tasks "
                    f"{', '.join(t['name'] + ' (' + t['metric'] + ')' for t in mf['tasks'])}."
                ],
            )
        )

    if inputs.runs:
        header, rows = seed_study_rows(inputs.runs, refs)
        s = Section(
            "Tasks x methods: R(T_last, T_i)",
            [
                "Each task's test score after the last task (MRR@5 for ranking tasks, accuracy for "
                "classification). One run: the score with its 95% bootstrap interval over test users "
                "[lo, hi]; runs that differ only in their seed: mean ± std over seeds. Reference rows "
                "need no model: the majority class / most-popular label by training frequency, a random "
                "order (chance), and the next-query heuristics recorded by train-sequence."
                + (
                    ""
                    if any(r.metrics.fwt.get("mean") is not None for r in inputs.runs)
                    else " FWT needs single-model scores (train-sequence --with-single)."
                )
            ],
        )
        s.tables.append(("R(T_last, T_i) per method", header, rows))
        forget = save_figure(
            fig_forgetting(
                inputs.runs,
                _all_references(inputs.runs, refs),
                "each task's test score after every later task (forgetting)",
            ),
            figs / "forgetting.png",
        )
        s.figures.append(("forgetting: each task's score over the sequence, every method", forget))
        sections.append(s)

    relation: Section | None = None
    for run in inputs.runs:
        m = run.metrics
        header, rows = r_matrix_table(run)
        per_epoch = ", ".join(f"{t} {v:.2f}" for t, v in zip(m.tasks, m.seconds_per_epoch, strict=False))
        s = Section(
            f"Run `{run.name}` (strategy `{m.strategy}`)",
            [
                f"{m.r_matrix.summary()}; seconds per epoch: {per_epoch}."
                + (" Cells: score [95% bootstrap interval over test users]." if run.ranks is not None else "")
            ],
        )
        s.tables.append((f"R matrix: {run.name} ({m.r_matrix.summary()})", header, rows))
        for fn in RUN_FIGURES:
            got = fn(run, ctx)
            if got is not None:
                stem, caption, fig = got
                s.figures.append((caption, save_figure(fig, figs / f"{stem}.png")))
        sections.append(s)
        masks = read_masks(run.path)  # written by train-sequence for strategies with task masks
        if masks is not None:
            if relation is None:
                relation = Section("Task relations")
            names_m, arr = masks
            # the first run's figure keeps the name task_relation.png (the demo's contract)
            png = "task_relation.png" if not relation.figures else f"task_relation_{_slug(run.name)}.png"
            fig = fig_similarity(
                names_m, mask_similarity(arr), f"task relation (cosine of masks at smax): {run.name}"
            )
            relation.text.append(
                f"Cosine similarity of the tasks' concatenated masks at s = smax after the last "
                f"task (`{run.name}`, strategy `{m.strategy}`)."
            )
            relation.figures.append(("task relation", save_figure(fig, figs / png)))
    if relation is not None:
        sections.append(relation)

    space = Section("The user space")
    legends: dict[str, str] = {}
    for info in inputs.user_vectors:
        meta = info.meta
        for task, vecs, labels, label_names in pca_inputs(info, refs):
            title = (
                f"user vectors {Path(meta.get('run_dir', info.name)).name} "
                f"(after {meta.get('after_task', '?')}, mask {meta.get('task')}): PCA, coloured by {task}"
            )
            png = save_figure(
                fig_user_pca(vecs, labels, label_names, title, task),
                figs / f"users_{_slug(info.name.removesuffix('.parquet'))}_{task}.png",
            )
            space.figures.append((f"{info.name} coloured by {task}", png))
            if not all(rep_ok := [_renderable(n) for n in label_names]) and task not in legends:
                legends[task] = (
                    f"{task} classes in the figures: "
                    + ", ".join(
                        f"class {k} = {n}"
                        for k, (n, ok) in enumerate(zip(label_names, rep_ok, strict=True))
                        if not ok
                    )
                    + " (no Hangul font found for the figures)."
                )
    space.text += list(legends.values())
    nearest = nearest_queries_table(inputs.runs, refs)
    if nearest is not None:
        before = " before training (the embed-init table) and" if nearest[0][1].startswith("before") else ""
        space.text.append(
            f"Nearest queries (cosine of the input query embeddings) of the {N_FREQUENT_QUERIES} most "
            f"frequent queries,{before} after each run's last task."
        )
        space.tables.append(("nearest queries before and after training", *nearest))
    if space.figures or space.tables:
        if space.figures:
            space.text.insert(
                0,
                "Exported user vectors (export-users) projected on their first two principal "
                "components, each user coloured by its label in a classification task.",
            )
        sections.append(space)

    for c in inputs.coldstart:
        header, rows = coldstart_table(c)
        cnt = c.report["counts"]
        png = save_figure(fig_coldstart(c), figs / f"coldstart_{_slug(c.name)}.png")
        s = Section(
            f"Cold-start recommendation (`{c.name}`)",
            [
                f"Rule: {c.report['cold_rule']} — {cnt['n_warm']} warm, {cnt['n_cold']} cold users; "
                f"1 + {c.report['negatives']} candidates per user; seed {c.report['seed']}. Representation "
                "sources are named RUN@AFTER/mask-MASK: the model after learning AFTER, with MASK's "
                "task mask (RUN alone: the last model with its own mask)."
                + (
                    " Cells: value [95% bootstrap interval over the group's users]."
                    if c.ranks is not None
                    else ""
                )
            ],
        )
        s.tables.append(
            (f"coldstart-eval: {c.name} ({cnt['n_warm']} warm, {cnt['n_cold']} cold)", header, rows)
        )
        s.figures.append(("warm vs cold", png))
        sections.append(s)
    return sections, refs


def _all_references(runs: list[RunInfo], refs: DatasetReferences) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for r in runs:
        for task, scores in task_references(r, refs).items():
            for name, v in scores.items():
                out.setdefault(task, {}).setdefault(name, v)
    return out


def render_markdown(title: str, sections: list[Section], out: Path) -> str:
    md = [f"# querylearn report: {title}", ""]
    for s in sections:
        if s.title != "Dataset":
            md += [f"## {s.title}", ""]
        for line in s.text:
            md += [line, ""]
        for _, header, rows in s.tables:
            md += [markdown_table(header, rows), ""]
        for caption, path in s.figures:
            md += [f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    return "\n".join(md) + "\n"


def print_sections(sections: list[Section], console) -> None:
    """Rich tables on a terminal; plain complete tables otherwise (pipes, files, CI logs)."""
    if console.quiet:
        return
    if console.is_terminal:
        for s in sections:
            for title, header, rows in s.tables:
                console.print(rich_table(title, header, rows))
        return
    for s in sections:
        for title, header, rows in s.tables:
            console.file.write(plain_table(title, header, rows) + "\n\n")
    console.file.flush()


def build_report(
    root: str | Path, out: str | Path | None = None, *, console=None, as_json: bool = False
) -> Path:
    """Write figures and ``report.md`` for every run/report under ``root``; print the tables
    (or, with ``as_json``, one JSON object with the tables and numbers) to ``console``."""
    root = Path(root)
    inputs = discover(root)
    out = Path(out) if out else root
    sections, refs = build_sections(inputs, out)
    path = out / "report.md"
    atomic_write_bytes(path, render_markdown(root.name, sections, out).encode("utf-8"))
    if console is not None and not console.quiet:
        if as_json:
            doc = {
                "kind": "querylearn-report",
                "report": str(path),
                "sections": [
                    {
                        "title": s.title,
                        "text": s.text,
                        "tables": [{"title": t, "header": h, "rows": r} for t, h, r in s.tables],
                        "figures": [str(p) for _, p in s.figures],
                    }
                    for s in sections
                ],
                "values": _values(inputs, refs),
            }
            console.file.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
            console.file.flush()
        else:
            print_sections(sections, console)
    return path
