"""Reference points for the next_query task (T1) of a dataset: two training-free rankers.

    python bench/t1_heuristics.py DATASET_DIR [--split test]

- recent-distinct: rank the user's own earlier queries, most recent first (distinct), nothing else;
- most-popular: rank queries by their count in the vocabulary (pad/unk excluded).
Both are scored like train-sequence scores T1: MRR@5 of the user's last query over the split's users.
"""

from __future__ import annotations

import argparse

import numpy as np

from querylearn.data.dataset import load_dataset
from querylearn.metrics import mrr_at_k


def t1_heuristics(data, split: str = "test") -> dict:
    """{"task", "n_users", "recent-distinct", "most-popular"}: MRR@5 of both rankers on ``split``."""
    ds = load_dataset(data)
    task = next(t for t in ds.tasks if t.kind == "next_query")
    rows = task.rows(split)
    popular = [int(q) for q in np.argsort(-np.asarray(ds.vocab.counts), kind="stable") if q > 1]
    pop_rank = {q: r for r, q in enumerate(popular)}
    recent, pop = [], []
    for r in rows:
        seq = ds.sequences[task.user_index[r]]
        target = int(seq[-1])
        ranked: list[int] = []
        for q in seq[:-1][::-1]:
            if q != 0 and int(q) not in ranked:
                ranked.append(int(q))
        recent.append(ranked.index(target) if target in ranked else 10**6)
        pop.append(pop_rank.get(target, 10**6))
    return {
        "task": task.name,
        "n_users": len(rows),
        "recent-distinct": float(mrr_at_k(np.array(recent), 5)),
        "most-popular": float(mrr_at_k(np.array(pop), 5)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--split", default="test")
    args = ap.parse_args()
    h = t1_heuristics(args.data, args.split)
    print(f"{h['task']} {args.split}: {h['n_users']} users")
    print(f"recent-distinct MRR@5 {h['recent-distinct']:.4f}")
    print(f"most-popular    MRR@5 {h['most-popular']:.4f}")


if __name__ == "__main__":
    main()
