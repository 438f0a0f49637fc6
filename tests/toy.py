"""A tiny dataset with known answers, for the tests (the ``toy`` fixture of conftest.py).

Process (all seeded):
- ``n_queries`` queries named ``검색어0 .. 검색어{n-1}`` (ids 2.. in vocabulary order).
- Each user's sequence (length 3..seq_len) is a walk over query indices: the next index is
  ``prev + 1 (mod n)`` with probability ``p_walk``, else uniform. T1 (next_query) is learnable.
- ``T2`` (multi_target): two rows per user, labels ``last % 5`` and ``(last + 1) % 5``.
- ``T3`` (classify): label ``(last // 5) % 3``, a different function of the same last query.
- Interactions: items ``상품0..상품{n_items-1}``; a user's items are ``(last + k) % n_items``;
  every fourth user has a single interaction (cold by the < 2 rule).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from querylearn.data.dataset import Interactions, TaskArrays, write_dataset
from querylearn.data.splits import permuted_split
from querylearn.data.vocab import QueryVocab


def make_toy_dataset(
    out_dir: str | Path,
    *,
    n_users: int = 200,
    n_queries: int = 30,
    seq_len: int = 8,
    n_items: int = 20,
    p_walk: float = 0.9,
    seed: int = 0,
) -> dict:
    """Write the toy dataset to ``out_dir``; return its manifest."""
    rng = np.random.default_rng(seed)
    walks = []
    for _ in range(n_users):
        length = int(rng.integers(3, seq_len + 1))
        cur = int(rng.integers(n_queries))
        walk = [cur]
        for _ in range(length - 1):
            cur = (cur + 1) % n_queries if rng.random() < p_walk else int(rng.integers(n_queries))
            walk.append(cur)
        walks.append(walk)
    counts = Counter(f"검색어{q}" for w in walks for q in w)
    vocab = QueryVocab.build(counts)
    seqs = np.zeros((n_users, seq_len), dtype=np.int32)
    for u, w in enumerate(walks):
        ids = [vocab.id(f"검색어{q}", normalized=True) for q in w]
        seqs[u, seq_len - len(ids) :] = ids
    user_ids = [f"u{u:05d}" for u in range(n_users)]
    user_split = permuted_split(n_users, seed)
    last = np.array([w[-1] for w in walks])
    users = np.arange(n_users)

    t1 = TaskArrays(
        "T1", "next_query", "mrr@5", users.copy(), seqs[:, -1].astype(np.int64), user_split.copy(), len(vocab)
    )
    t2_users = np.repeat(users, 2)
    t2_label = np.stack([last % 5, (last + 1) % 5], axis=1).reshape(-1)
    t2 = TaskArrays(
        "T2", "multi_target", "mrr@5", t2_users, t2_label, user_split[t2_users], 5,
        [f"카테고리{i}" for i in range(5)], np.bincount(t2_label, minlength=5).tolist(),
    )
    t3_label = (last // 5) % 3
    t3 = TaskArrays(
        "T3", "classify", "accuracy", users.copy(), t3_label, user_split.copy(), 3,
        ["A", "B", "C"], np.bincount(t3_label, minlength=3).tolist(),
    )
    rows_u, rows_i, rows_t = [], [], []
    for u in range(n_users):
        k = 1 if u % 4 == 0 else int(rng.integers(3, 7))
        for j in range(k):
            rows_u.append(u)
            rows_i.append(int((last[u] + j) % n_items))
            rows_t.append(1_600_000_000 + 1000 * j + u)
    inter = Interactions(
        np.array(rows_u), np.array(rows_i), np.array(rows_t),
        [f"p{i}" for i in range(n_items)], [f"상품{i}" for i in range(n_items)],
    )
    return write_dataset(
        out_dir, source="toy", synthetic=True, vocab=vocab, user_ids=user_ids, sequences=seqs,
        user_split=user_split, tasks=[t1, t2, t3], interactions=inter,
        split_info={"mode": "user", "seed": seed, "fractions": [0.8, 0.05, 0.15]},
        summary={"generator": "toy", "seed": seed},
    )
