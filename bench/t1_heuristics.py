"""Reference points for the next_query task (T1) of a dataset: three training-free rankers.

    python bench/t1_heuristics.py DATASET_DIR [--split test] [--decay 0.9]

The maths is ``querylearn.heuristics`` (the same function train-sequence uses for the references in
``metrics.json``): recent-distinct (the user's own earlier queries, most recent first, each once),
recency-frequency (the user's own queries by time-decayed count) and most-popular (query counts over
the training users' sequences). Scored like train-sequence scores T1: the user's last query given
the earlier ones, on the split's rows.
"""

from __future__ import annotations

import argparse

import numpy as np

from querylearn.continual.data import task_data
from querylearn.data.dataset import load_dataset
from querylearn.heuristics import DEFAULT_DECAY, next_query_references


def t1_heuristics(data, split: str = "test", decay: float = DEFAULT_DECAY) -> dict:
    """{"task", "n_users", "recent-distinct", "recency-frequency", "most-popular"} (MRR@5 of each
    ranker on ``split``) and "metrics" (every ranking metric per ranker)."""
    ds = load_dataset(data)
    name = next(t.name for t in ds.tasks if t.kind == "next_query")
    t = task_data(ds, name)
    seqs = np.asarray(ds.sequences)
    refs = next_query_references(
        seqs[t.users[split], :-1],
        t.labels[split],
        seqs[np.unique(t.users["train"]), 1:],
        t.n_classes,
        decay=decay,
    )
    return {"task": name, "n_users": t.n(split), **{r: m["mrr@5"] for r, m in refs.items()}, "metrics": refs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--decay", type=float, default=DEFAULT_DECAY, help="recency-frequency decay per step")
    args = ap.parse_args()
    h = t1_heuristics(args.data, args.split, args.decay)
    print(f"{h['task']} {args.split}: {h['n_users']} users")
    for ref, m in h["metrics"].items():
        print(f"{ref:<17} MRR@5 {m['mrr@5']:.4f}  HR@5 {m['hr@5']:.4f}  HR@20 {m['hr@20']:.4f}")


if __name__ == "__main__":
    main()
