"""``querylearn report``: tables and figures from train-sequence runs and coldstart-eval reports.

Reads only artifacts: ``RUN_DIR/metrics.json`` (+ ``logs/*.jsonl``: learning curves and, for
TERACON, ρ per past task and each task's mask sparsity over training; ``masks.npz`` for the
task-relation heatmap of runs with task masks) and ``REPORT_DIR/report.json``. Writes PNG figures
and one ``report.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from querylearn.artifacts import atomic_write_bytes, read_json
from querylearn.continual.results import METRICS_KIND, TrainMetrics, read_masks
from querylearn.errors import QuerylearnError
from querylearn.recsys.report import text_rows as coldstart_rows  # the one cold-start row builder


@dataclass
class RunInfo:
    name: str
    path: Path
    metrics: TrainMetrics


@dataclass
class ReportInputs:
    runs: list[RunInfo] = field(default_factory=list)
    coldstart: list[tuple[str, Path, dict]] = field(default_factory=list)


def _label(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if path != root else Path(path.name)
    return str(rel).replace("\\", "/")


def discover(root: str | Path) -> ReportInputs:
    """Find runs (``metrics.json``) and coldstart reports (``report.json``) at most 3 levels below ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise QuerylearnError(f"{root}: not a directory; pass a run directory or a demo output directory")
    found = ReportInputs()
    for depth in range(4):
        for m in sorted(root.glob("/".join(["*"] * depth + ["metrics.json"]))):
            data = read_json(m)
            if isinstance(data, dict) and data.get("kind") == METRICS_KIND:
                found.runs.append(RunInfo(_label(m.parent, root), m.parent, TrainMetrics.from_dict(data, m)))
        for r in sorted(root.glob("/".join(["*"] * depth + ["report.json"]))):
            data = read_json(r)
            if data.get("kind") == "coldstart_report":
                found.coldstart.append((_label(r.parent, root), r.parent, data))
    if not found.runs and not found.coldstart:
        raise QuerylearnError(
            f"{root}: no metrics.json (train-sequence) or report.json (coldstart-eval) found within 3 levels"
        )
    return found


def _fmt(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


# ---------------------------------------------------------------- tables (markdown + rich)

def r_matrix_rows(metrics: TrainMetrics) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the R matrix with BWT and FWT per task (:meth:`RMatrix.table`)."""
    return metrics.r_matrix.table()


def seed_study_rows(runs: list[RunInfo]) -> tuple[list[str], list[list[str]]]:
    """Tasks x methods: R(T_last, T_i) of each run, plus mean, BWT and FWT means."""
    tasks: list[str] = []
    for r in runs:
        for t in r.metrics.tasks:
            if t not in tasks:
                tasks.append(t)
    header = ["method", *tasks, "mean", "BWT", "FWT"]
    rows = []
    for r in runs:
        last = r.metrics.R[-1]
        by_task = dict(zip(r.metrics.tasks, last, strict=True))
        vals = [v for v in last if v is not None]
        rows.append([
            r.name, *(_fmt(by_task.get(t)) for t in tasks), _fmt(float(np.mean(vals)) if vals else None),
            _fmt(r.metrics.bwt.get("mean")), _fmt(r.metrics.fwt.get("mean")),
        ])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def rich_table(title: str, header: list[str], rows: list[list[str]]):
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, h in enumerate(header):
        table.add_column(escape(h), justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*(escape(c) for c in r))
    return table


# ---------------------------------------------------------------- maths for the figures

def mask_similarity(masks: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of tasks' concatenated masks (ALGORITHMS.md 5.8).

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


# ---------------------------------------------------------------- figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = ["DejaVu Sans"]
    return plt


def plot_r_matrix(metrics: TrainMetrics, title: str, path: Path) -> Path:
    plt = _plt()
    tasks = metrics.tasks
    R = np.array([[np.nan if v is None else v for v in row] for row in metrics.R], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(tasks), 0.8 + 0.6 * len(tasks)))
    im = ax.imshow(R, vmin=0, vmax=max(1e-9, np.nanmax(R)), cmap="viridis")
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            if not np.isnan(R[i, j]):
                ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", color="white" if R[i, j] < 0.6 * np.nanmax(R) else "black", fontsize=8)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(tasks)), [f"after {t}" for t in tasks])
    ax.set_xlabel("evaluated on")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_similarity(names: list[str], sim: np.ndarray, title: str, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    # masks at smax are close to 1 in most channels, so the colour scale starts at the smallest value
    im = ax.imshow(sim, vmin=float(sim.min()), vmax=1.0, cmap="magma")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if sim[i, j] < (1.0 + float(sim.min())) / 2 else "black")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, list[tuple[int, float]]], metrics: TrainMetrics, title: str,
                path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for task, metric in zip(metrics.tasks, metrics.metric, strict=True):
        pts = curves.get(task, [])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=f"{task} ({metric})")
    ax.set_xlabel("epoch of the task")
    ax.set_ylabel("validation score")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
        ax.text((first + last) / 2, 1.0, task, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=7)


def plot_mechanism(series: list[dict], title: str, path: Path) -> Path:
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_warm_cold(report: dict, path: Path) -> Path:
    plt = _plt()
    methods = list(report["methods"])
    groups = ("warm", "cold")
    ks = ("hr@1", "hr@5", "hr@10")
    fig, axes = plt.subplots(1, 3, figsize=(3.2 * 3, 3.4 + 0.25 * ((len(methods) + 3) // 4)), sharey=False)
    width = 0.8 / max(1, len(methods))
    for ax, k in zip(axes, ks, strict=True):
        for m, name in enumerate(methods):
            vals = [report["methods"][name][g][k] or 0.0 for g in groups]
            ax.bar(np.arange(len(groups)) + m * width, vals, width, label=name)
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, groups)
        ax.set_title(k.upper(), fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(methods)), fontsize=7, frameon=False)
    fig.suptitle(f"warm vs cold users ({report['counts']['n_warm']} warm, {report['counts']['n_cold']} cold)",
                 fontsize=9)
    rows = (len(methods) + 3) // 4
    fig.tight_layout(rect=(0, 0.07 * rows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- the report

def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "run"


def build_report(root: str | Path, out: str | Path | None = None, *, console=None) -> Path:
    """Write figures and ``report.md`` for every run/report under ``root``; print the tables."""
    root = Path(root)
    inputs = discover(root)
    out = Path(out) if out else root
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    md: list[str] = [f"# querylearn report: {root.name}", ""]
    data_manifest = None
    for cand in (root / "data" / "dataset.json", root / "dataset.json"):
        if cand.is_file():
            data_manifest = read_json(cand)
    if data_manifest is not None:
        md += [f"Dataset: `{data_manifest['source']}`{' (**synthetic**)' if data_manifest['synthetic'] else ''}, "
               f"{data_manifest['n_users']:,} users, vocabulary {data_manifest['vocab_size']:,}, "
               f"tasks {', '.join(t['name'] + ' (' + t['metric'] + ')' for t in data_manifest['tasks'])}.", ""]
    if inputs.runs:
        header, rows = seed_study_rows(inputs.runs)
        md += ["## Tasks x methods: R(T_last, T_i)", "",
               "Each task's score after the last task (MRR@5 for ranking tasks, accuracy for classification).", "",
               markdown_table(header, rows), ""]
        if console is not None:
            console.print(rich_table("R(T_last, T_i) per method", header, rows))
    relation: list[str] = []
    for run in inputs.runs:
        m = run.metrics
        slug = _slug(run.name)
        header, rows = r_matrix_rows(m)
        r_png = plot_r_matrix(m, f"R matrix: {run.name} ({m.strategy})", figs / f"R_{slug}.png")
        curves = learning_curves(run.path, m)
        c_png = plot_curves(curves, m, f"validation curves: {run.name}", figs / f"curves_{slug}.png")
        per_epoch = ", ".join(f"{t} {s:.2f}" for t, s in zip(m.tasks, m.seconds_per_epoch, strict=False))
        md += [f"## Run `{run.name}` (strategy `{m.strategy}`)", "",
               markdown_table(header, rows), "",
               f"{m.r_matrix.summary()}; seconds per epoch: {per_epoch}.",
               "", f"![R matrix]({r_png.relative_to(out)})", "", f"![learning curves]({c_png.relative_to(out)})", ""]
        if console is not None:
            console.print(rich_table(f"R matrix: {run.name} ({m.r_matrix.summary()})", header, rows))
        for task, ref_header, ref_rows in m.reference_tables():  # T1 next to training-free rankers
            md += [f"{task} against training-free rankers on the same test rows "
                   "(querylearn.heuristics):", "", markdown_table(ref_header, ref_rows), ""]
            if console is not None:
                title = f"{task} vs training-free rankers: {run.name}"
                console.print(rich_table(title, ref_header, ref_rows))
        series = mechanism_series(run.path, m)
        if series:
            k_png = plot_mechanism(series, f"TERACON mechanism: {run.name}", figs / f"mechanism_{slug}.png")
            md += ["Sampling ratio ρ of every past task and each task's fraction of channels switched off "
                   "at smax, per epoch (from `logs/`).", "", f"![mechanism]({k_png.relative_to(out)})", ""]
        got = read_masks(run.path)  # written by train-sequence for strategies with task masks
        if got is not None:
            names, masks = got
            # the first run's figure keeps the name task_relation.png (the demo's contract)
            png_name = "task_relation.png" if not relation else f"task_relation_{slug}.png"
            s_png = plot_similarity(names, mask_similarity(masks),
                                    f"task relation (cosine of masks at smax): {run.name}", figs / png_name)
            relation += [f"Cosine similarity of the tasks' concatenated masks at s = smax after the last "
                         f"task (`{run.name}`, strategy `{m.strategy}`).", "",
                         f"![task relation]({s_png.relative_to(out)})", ""]
    if relation:
        md += ["## Task relations", "", *relation]
    for name, _path, report in inputs.coldstart:
        header, rows = coldstart_rows(report)
        png = plot_warm_cold(report, figs / f"coldstart_{_slug(name)}.png")
        c = report["counts"]
        md += [f"## Cold-start recommendation (`{name}`)", "",
               f"Rule: {report['cold_rule']} — {c['n_warm']} warm, {c['n_cold']} cold users; "
               f"1 + {report['negatives']} candidates per user; seed {report['seed']}.", "",
               markdown_table(header, rows), "", f"![warm vs cold]({png.relative_to(out)})", ""]
        if console is not None:
            console.print(rich_table(f"coldstart-eval: {name} ({c['n_warm']} warm, {c['n_cold']} cold)", header, rows))
    path = out / "report.md"
    atomic_write_bytes(path, ("\n".join(md) + "\n").encode("utf-8"))
    return path
