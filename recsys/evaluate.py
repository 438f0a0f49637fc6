"""Rank candidate lists and compute HR@1/5/10 and NDCG@10 for warm, cold and all users.

Ranks are 0-based (``querylearn.metrics``): the rank of the held-out item (candidate column 0) is
the number of candidates with a strictly greater score. Exact ties with the held-out item are
then ordered by seeded random keys that are the same for every method
(``interactions.tiebreak_keys``): without this, a method that gives every candidate the same
score (ALS for a user with no training interactions, most-popular among never-seen items)
would rank the held-out item first. Without ties the rank equals
``querylearn.metrics.ranks_from_scores``.
"""

from __future__ import annotations

import math

import numpy as np

from querylearn.metrics import hit_at_k, ndcg_at_k, ranks_from_scores

METRIC_NAMES = ("hr@1", "hr@5", "hr@10", "ndcg@10")
GROUPS = ("warm", "cold", "all")


def candidate_ranks(scores: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """0-based rank of candidate 0 in each row.

    scores: [N, C] float (column 0 = held-out item); tiebreak: [N, C] keys or None.
    Returns [N] int64 = #(score > s_0) + #(score == s_0 and key > key_0).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).any(axis=1).sum())
        raise ValueError(f"{bad} candidate rows have non-finite scores")
    target = np.zeros(len(scores), dtype=np.int64)
    ranks = ranks_from_scores(scores, target)
    if tiebreak is not None:
        tied = scores[:, 1:] == scores[:, :1]  # [N, C-1]
        ahead = tiebreak[:, 1:] > tiebreak[:, :1]
        ranks = ranks + (tied & ahead).sum(axis=1)
    return ranks.astype(np.int64)


def tied_target_rows(scores: np.ndarray) -> int:
    """How many rows have at least one negative scored exactly like the held-out item."""
    scores = np.asarray(scores)
    return int((scores[:, 1:] == scores[:, :1]).any(axis=1).sum())


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float | int | None]:
    """``n_users``, ``hr@1``, ``hr@5``, ``hr@10``, ``ndcg@10`` from 0-based ranks [N] (None when N = 0)."""
    ranks = np.asarray(ranks)
    out: dict[str, float | int | None] = {"n_users": int(len(ranks))}
    values = {
        "hr@1": hit_at_k(ranks, 1),
        "hr@5": hit_at_k(ranks, 5),
        "hr@10": hit_at_k(ranks, 10),
        "ndcg@10": ndcg_at_k(ranks, 10),
    }
    for name in METRIC_NAMES:
        v = values[name]
        out[name] = None if math.isnan(v) else float(v)
    return out


def group_metrics(ranks: np.ndarray, cold: np.ndarray) -> dict[str, dict]:
    """Metrics for ``warm``, ``cold`` and ``all``. ranks [N] int, cold [N] bool (same rows)."""
    cold = np.asarray(cold, dtype=bool)
    return {
        "warm": metrics_from_ranks(ranks[~cold]),
        "cold": metrics_from_ranks(ranks[cold]),
        "all": metrics_from_ranks(ranks),
    }
