"""Pure numbers behind ``querylearn report``: intervals, reference scores, projections, neighbours.

No I/O and no plotting: every function takes arrays and returns arrays or floats, so the report's
tables and figures are thin renderings of these (and each has a known-answer test).
"""

from __future__ import annotations

import math

import numpy as np

N_BOOT = 1000  # bootstrap resamples of every interval
LEVEL = 0.95  # two-sided coverage of the percentile intervals


def per_row_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each row's contribution to ``metric`` from its 0-based rank (querylearn.metrics' definitions).

    ranks [N] int -> [N] float64 whose mean is the metric: ``accuracy`` (rank 0), ``hr@k``
    (rank < k), ``mrr@k`` (1/(rank+1) when rank < k) and ``ndcg@k`` (1/log2(rank+2) when rank < k).
    """
    r = np.asarray(ranks, dtype=np.float64)
    if metric == "accuracy":
        return (r < 1).astype(np.float64)
    name, _, k_text = metric.partition("@")
    if not k_text.isdigit() or name not in ("hr", "mrr", "ndcg"):
        raise ValueError(f"unknown metric {metric!r} (accuracy, hr@k, mrr@k, ndcg@k)")
    k = int(k_text)
    inside = r < k
    if name == "hr":
        return inside.astype(np.float64)
    if name == "mrr":
        return np.where(inside, 1.0 / (r + 1.0), 0.0)
    return np.where(inside, 1.0 / np.log2(r + 2.0), 0.0)


def bootstrap_ci(
    values: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    n_boot: int = N_BOOT,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``values`` [N], resampling ``groups`` (e.g. the
    user of each row, so a user's several rows move together) with replacement; rows when None.

    The statistic of a resample is sum(values of the drawn groups) / number of their rows, i.e. the
    same row-weighted mean as the point estimate. Returns None for fewer than 2 groups.
    """
    values = np.asarray(values, dtype=np.float64)
    if groups is None:
        sums, counts = values, np.ones_like(values)
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sums = np.bincount(inverse, weights=values)
        counts = np.bincount(inverse).astype(np.float64)
    n = len(sums)
    if n < 2:
        return None
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for start in range(0, n_boot, 100):  # [100, n] index blocks keep memory flat
        draw = rng.integers(0, n, size=(min(100, n_boot - start), n))
        stats[start : start + len(draw)] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def chance_score(metric: str, n_candidates: int) -> float:
    """Expected ``metric`` of a uniformly random ranking of ``n_candidates`` with one target.

    accuracy = 1/n; hr@k = min(k, n)/n; mrr@k = (1/n) sum_{r=1..min(k,n)} 1/r;
    ndcg@k = (1/n) sum_{r=1..min(k,n)} 1/log2(r+1).
    """
    n = int(n_candidates)
    if n < 1:
        raise ValueError("n_candidates must be at least 1")
    ranks = np.arange(n)  # every rank is equally likely
    return float(per_row_metric(ranks, metric).mean())


def popularity_ranks(train_labels: np.ndarray, test_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """0-based rank of each test label when classes are ordered by their training frequency
    (the majority class / most-popular reference). Rank = number of classes strictly more frequent,
    the evaluation's rule for ties. -> [N_test] int64."""
    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes)
    test = np.asarray(test_labels, dtype=np.int64)
    return (counts[None, :] > counts[test][:, None]).sum(axis=1).astype(np.int64)


def column_reference(R_columns: list[list[float | None]], single: list[float | None]) -> list[float | None]:
    """Per task (column j): the best score it reaches anywhere in the report (any run, any row, or
    a single-model score), the denominator of the normalised heatmaps. None where nothing is known.

    R_columns[j]: every value of column j across runs; single[j]: single-model scores (may hold None).
    """
    out = []
    for j, col in enumerate(R_columns):
        vals = [
            v for v in [*col, single[j] if j < len(single) else None] if v is not None and not math.isnan(v)
        ]
        best = max(vals) if vals else None
        out.append(best if best is not None and best > 0 else None)
    return out


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project [N, D] onto its first two principal components.

    Returns (coordinates [N, 2], explained variance ratio [2]). The sign of each component is fixed
    (largest absolute loading positive) so the picture does not flip between runs.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    signs = np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    coords = x @ comps.T
    var = s**2
    ratio = var[:2] / var.sum() if var.sum() > 0 else np.zeros(2)
    if coords.shape[1] < 2:  # one-dimensional input
        coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        ratio = np.pad(ratio, (0, 2 - len(ratio)))
    return coords, ratio


def nearest_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray) -> np.ndarray:
    """Ids of the ``k`` rows most cosine-similar to each row in ``queries`` (itself and ``exclude``
    left out), most similar first. vectors [V, D], queries [Q] int, exclude [E] int -> [Q, k] int64."""
    v = np.asarray(vectors, dtype=np.float64)
    unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    sims = unit[np.asarray(queries)] @ unit.T  # [Q, V]
    sims[:, np.asarray(exclude, dtype=np.int64)] = -np.inf
    sims[np.arange(len(queries)), np.asarray(queries)] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
