"""Pure metric functions.

Ranks are 0-based: rank 0 means the target has the highest score. Ties are counted
pessimistically-neutral: rank = number of candidates with a strictly higher score.
"""

from __future__ import annotations

import math

import numpy as np


def ranks_from_scores(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of ``target`` in each row of ``scores``.

    scores: [N, C] float; target: [N] int -> [N] int64 (count of strictly greater scores).
    """
    scores = np.asarray(scores)
    target = np.asarray(target, dtype=np.int64)
    target_scores = scores[np.arange(len(target)), target][:, None]
    return (scores > target_scores).sum(axis=1).astype(np.int64)


def hit_at_k(ranks: np.ndarray, k: int) -> float:
    ranks = np.asarray(ranks)
    return float((ranks < k).mean()) if len(ranks) else float("nan")


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """MRR@k = mean of 1/(rank+1) for rank < k else 0 (ranks 0/4/5 -> 1, 0.2, 0)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return float("nan")
    return float(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0).mean())


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG@k for one relevant item: 1/log2(rank+2) for rank < k else 0."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if not len(ranks):
        return float("nan")
    return float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (5, 20)) -> dict[str, float]:
    """Named values: ``mrr@k``, ``hr@k``, ``ndcg@k`` for each k, plus ``accuracy`` (= hr@1)."""
    out: dict[str, float] = {"accuracy": hit_at_k(ranks, 1)}
    for k in ks:
        out[f"mrr@{k}"] = mrr_at_k(ranks, k)
        out[f"hr@{k}"] = hit_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    return out


def _is_num(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def bwt(R: list[list[float | None]]) -> dict[str, object]:
    """Backward transfer from the lower-triangular matrix R (R[i][j] after task i on task j).

    BWT_j = R[M-1][j] - R[j][j] for j < M-1; mean over those j (GEM-style).
    Returns {"per_task": [..., None for the last], "mean": float | None}.
    """
    m = len(R)
    per = [
        (R[m - 1][j] - R[j][j]) if j < m - 1 and _is_num(R[m - 1][j]) and _is_num(R[j][j]) else None
        for j in range(m)
    ]
    vals = [v for v in per if v is not None]
    return {"per_task": per, "mean": float(np.mean(vals)) if vals else None}


def fwt(R: list[list[float | None]], single: list[float | None]) -> dict[str, object]:
    """Forward transfer: FWT_i = R[i][i] - single[i] for i >= 1 (task 0 has none).

    ``single`` holds the score of a model trained on task i alone (SinMo).
    """
    m = len(R)
    per = [
        (R[i][i] - single[i]) if i >= 1 and _is_num(R[i][i]) and _is_num(single[i]) else None
        for i in range(m)
    ]
    vals = [v for v in per if v is not None]
    return {"per_task": per, "mean": float(np.mean(vals)) if vals else None}
