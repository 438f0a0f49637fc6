"""Training-free rankers for the next_query task (T1): the references a T1 score is read against.

Pure numpy functions over left-padded histories ``[n, L]`` (most recent last) and targets ``[n]``:

- **recent-distinct**: the user's own earlier queries, most recent first, each once; nothing else;
- **recency-frequency**: the user's own earlier queries by time-decayed count
  ``score(q) = Σ_k [x_k = q] · decay^(age_k)`` (age 0 = the most recent position), so a query
  scores high when it is frequent *and* recent; nothing else;
- **most-popular**: every query by its count over the training users' sequences at the positions
  the T1 loss predicts (1..L-1), ties broken by id (lower first); padding and ``<unk>`` never ranked.

Ranks are 0-based like :mod:`querylearn.metrics` (the number of candidates ranked above the target).
The two history rankers rank only the user's own queries: a target absent from the history is a
miss (rank = ``n_classes``, beyond every cut-off), never a tie with the unranked rest.
Padding and ``<unk>`` are never candidates of the history rankers (as in the copy head).
"""

from __future__ import annotations

import numpy as np

from querylearn.data.vocab import PAD_ID, UNK_ID
from querylearn.metrics import ranking_metrics

REFERENCE_NAMES = ("recent-distinct", "recency-frequency", "most-popular")
DEFAULT_DECAY = 0.9
EXCLUDED = (PAD_ID, UNK_ID)
_CHUNK = 1024  # rows per block of the [rows, L, L] equality tensor


def _check(history: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    history = np.asarray(history, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    if history.ndim != 2 or target.shape != (history.shape[0],):
        raise ValueError(f"history must be [n, L] and target [n], got {history.shape} and {target.shape}")
    return history, target


def _valid(history: np.ndarray) -> np.ndarray:
    """[n, L] bool: positions holding a real query (not padding, not ``<unk>``)."""
    return ~np.isin(history, EXCLUDED)


def _history_ranks(
    history: np.ndarray, target: np.ndarray, n_classes: int, decay: float | None
) -> np.ndarray:
    """Ranks of ``target`` among the distinct valid queries of each history.

    decay None: by recency of the last occurrence (recent-distinct); else by Σ decay^age (recency-frequency).
    """
    history, target = _check(history, target)
    n, L = history.shape
    ranks = np.full(n, n_classes, dtype=np.int64)
    if L == 0:
        return ranks
    age = np.arange(L - 1, -1, -1, dtype=np.float64)  # [L], 0 = most recent
    for start in range(0, n, _CHUNK):
        h = history[start : start + _CHUNK]  # [b, L]
        t = target[start : start + _CHUNK]  # [b]
        valid = _valid(h)  # [b, L]
        eq = h[:, :, None] == h[:, None, :]  # [b, L(k), L(j)]
        later = np.triu(np.ones((L, L), dtype=bool), k=1)  # j > k
        last = valid & ~(eq & later).any(axis=2)  # [b, L] position k is the last occurrence of its query
        is_target = (h == t[:, None]) & valid  # [b, L]
        found = is_target.any(axis=1)  # [b]
        if decay is None:
            # distinct queries seen after the target's last occurrence
            pos = np.where(found, L - 1 - np.argmax(is_target[:, ::-1], axis=1), L)  # [b]
            above = (last & (np.arange(L)[None, :] > pos[:, None])).sum(axis=1)
        else:
            w = np.where(valid, decay ** age[None, :], 0.0)  # [b, L]
            score = (eq * w[:, None, :]).sum(axis=2)  # [b, L] score of the query at position k
            target_score = (is_target * w).sum(axis=1)  # [b]
            above = (last & (score > target_score[:, None])).sum(axis=1)
        ranks[start : start + _CHUNK] = np.where(found, above, n_classes)
    return ranks


def recent_distinct_ranks(history: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """history [n, L], target [n] -> ranks [n] of the recent-distinct ranker (miss = ``n_classes``)."""
    return _history_ranks(history, target, n_classes, None)


def recency_frequency_ranks(
    history: np.ndarray, target: np.ndarray, n_classes: int, decay: float = DEFAULT_DECAY
) -> np.ndarray:
    """history [n, L], target [n] -> ranks [n] by Σ_k [x_k = q] decay^age_k (miss = ``n_classes``)."""
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must lie in (0, 1], got {decay}")
    return _history_ranks(history, target, n_classes, decay)


def popularity_scores(tokens: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of ``tokens`` (any shape) over ``n_classes`` queries, minus id/(n+1) so that every
    query has a distinct score (frequency first, lower id first); padding and ``<unk>`` -inf.
    -> [n_classes]."""
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    counts = np.bincount(tokens[~np.isin(tokens, EXCLUDED)], minlength=n_classes).astype(np.float64)
    score = counts[:n_classes] - np.arange(n_classes) / (n_classes + 1.0)
    score[list(EXCLUDED)] = -np.inf
    return score


def most_popular_ranks(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """scores [V] (``popularity_scores``), target [n] -> ranks [n] (strictly higher scores)."""
    order = np.sort(np.asarray(scores))[::-1]  # descending
    t = np.asarray(scores)[np.asarray(target, dtype=np.int64)]
    return np.searchsorted(-order, -t, side="left").astype(np.int64)  # count of scores > t


def next_query_references(
    history: np.ndarray,
    target: np.ndarray,
    train_tokens: np.ndarray,
    n_classes: int,
    *,
    decay: float = DEFAULT_DECAY,
    ks: tuple[int, ...] = (5, 20),
) -> dict[str, dict[str, float | int | None]]:
    """The three references on the same rows: {name: ranking metrics (mrr/hr/ndcg@k, accuracy) + n}.

    history [n, L] (the model's input rows), target [n], train_tokens: the training users' queries
    at the positions the T1 loss predicts (most-popular's counts).
    """
    ranks = {
        "recent-distinct": recent_distinct_ranks(history, target, n_classes),
        "recency-frequency": recency_frequency_ranks(history, target, n_classes, decay),
        "most-popular": most_popular_ranks(popularity_scores(train_tokens, n_classes), target),
    }
    out: dict[str, dict[str, float | int | None]] = {}
    for name, r in ranks.items():
        m: dict[str, float | int | None] = {
            k: (None if v != v else v) for k, v in ranking_metrics(r, ks).items()
        }
        m["n"] = int(len(r))
        out[name] = m
    return out
