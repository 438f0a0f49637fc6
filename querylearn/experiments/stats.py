"""Pure helpers the experiments share: mean ± std over seeds, final scores, validation curves and
retention statistics read from a run's ``metrics.json`` and ``logs/NN-TASK.jsonl`` (no torch)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def mean_std(values) -> dict:
    """{"mean", "std", "n"} of the non-None values (sample std, ddof = 1; 0.0 for one value).

    Empty input gives mean and std None.
    """
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    arr = np.asarray(vals, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": len(vals)}


def fmt_ms(ms: dict | None, spec: str = ".4f") -> str:
    """``0.1234 ± 0.0056``; the mean alone from one seed; empty when there is no value."""
    if not ms or ms.get("mean") is None:
        return ""
    if ms.get("n") == 1:
        return format(ms["mean"], spec)
    return f"{format(ms['mean'], spec)} ± {format(ms['std'], spec.lstrip('+'))}"


def final_scores(metrics: dict) -> dict[str, float | None]:
    """Each task's score after the run's last task, R(T_last, T_i), by task name."""
    last = metrics["R"][-1]
    return {t: last[j] for j, t in enumerate(metrics["tasks"])}


def read_log(run_dir: str | Path, position: int, task: str) -> list[dict]:
    """The epoch records of the task at 0-based ``position`` (``logs/NN-TASK.jsonl``), in order."""
    path = Path(run_dir) / "logs" / f"{position + 1:02d}-{task}.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def valid_curve(records: list[dict], task: str, metric: str) -> list[float | None]:
    """The validation ``metric`` of ``task`` per epoch record (every phase in order)."""
    out: list[float | None] = []
    for rec in records:
        valid = rec.get("valid", {})
        if isinstance(valid, dict) and isinstance(valid.get(task), dict):
            valid = valid[task]
        value = valid.get(metric) if isinstance(valid, dict) else None
        out.append(None if value is None else float(value))
    return out


def mean_curve(curves: list[list[float | None]]) -> list[dict]:
    """Per epoch, mean ± std over the curves that reach that epoch (early stopping ends them apart)."""
    n = max((len(c) for c in curves), default=0)
    return [mean_std([c[e] for c in curves if e < len(c)]) for e in range(n)]


def retention_stats(records: list[dict], n_past: int, rows_per_epoch: int) -> dict:
    """Sampling rate and retained fraction of one task's epochs under TERACON.

    ``rho_mean`` (per past task, mean over the epoch's batches) and ``retained_rows`` (rows re-used
    by retention, summed over the past tasks and batches) come from the epoch records. The retained
    fraction is retained_rows / (n_past · rows_per_epoch), rows_per_epoch the task's training
    examples (for multi-target tasks, whose batches retain distinct users, it is a lower bound).
    Returns {"rho": mean rate or None, "retained_fraction": ... or None}.
    """
    rhos = [v for rec in records for v in (rec.get("rho_mean") or {}).values()]
    fractions = [
        rec["retained_rows"] / (n_past * rows_per_epoch)
        for rec in records
        if "retained_rows" in rec and n_past > 0 and rows_per_epoch > 0
    ]
    if n_past > 0 and rows_per_epoch > 0 and not fractions and records:
        fractions = [0.0 for _ in records]  # no retention pass ran (alpha = 0)
    return {
        "rho": float(np.mean(rhos)) if rhos else None,
        "retained_fraction": float(np.mean(fractions)) if fractions else None,
    }
