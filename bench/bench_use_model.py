"""Using a trained model on new users (issue 16): closeness, the unseen-query map, ANN recall.

On the synthetic Korean search log (``--users`` users, seeded), 80% of the users are "known": their
log is prepared (T1 next query, T2 wish-listed categories, T7 gender) and a TERACON model is trained
on it from a query table whose source embeds text. The other 20% are "new": never seen in training.

1. Closeness: the known dataset's test-split users embedded by ``embed-users`` from the raw log vs
   their ``export-users`` vectors (max |difference|, mean cosine).
2. Unseen queries: the new users are embedded with ``--unseen map`` and ``--unseen unk``; a ridge
   probe fitted on the known training users' export-users vectors predicts T7 (accuracy) and T2
   (hit@1: the top category is one of the user's) for the new users under both rules.
3. ANN: faiss HNSW against exact search (recall@10) on the query table, the trained query vectors
   and the user vectors.

The text source is a tiny KoBERT-shaped model (tests/kobert_tiny.py: a sentencepiece model trained
here on the known users' queries + a random BertModel, subword mean): subword overlap is all it
knows, so the numbers say what the mapping does, not what a real KoBERT would reach.

    python bench/bench_use_model.py --users 1500 --out /tmp/bench-use
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def cli(*args) -> None:
    from querylearn.cli.main import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"querylearn {' '.join(map(str, args))} exited {exc.code}") from None


def ridge_probe(x_train, y_train, x_eval, lam=1.0):
    """One-vs-rest ridge regression on standardised vectors: [n, D], [n, K] 0/1 -> scores [m, K]."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    a = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ y_train)
    return np.c_[(x_eval - mean) / std, np.ones(len(x_eval))] @ w


def label_matrix(frame: pd.DataFrame, users: list[str], classes: list[str]) -> np.ndarray:
    idx = {u: i for i, u in enumerate(users)}
    cidx = {c: j for j, c in enumerate(classes)}
    y = np.zeros((len(users), len(classes)))
    for u, lab in zip(frame["user_id"], frame["label"], strict=True):
        if u in idx and lab in cidx:
            y[idx[u], cidx[lab]] = 1.0
    return y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", default="2,10,10", help="max epochs: N, or T1,second,later")
    ap.add_argument("--tasks", default="T1,T7", help="tasks trained (of T1, T2, T7)")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-use-model"))
    ap.add_argument("--json", type=Path, default=HERE / "results" / "use_model.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE.parent / "tests"))
    import kobert_tiny

    from querylearn.data.normalize import normalize_query
    from querylearn.data.synthetic import generate_synthetic_log
    from querylearn.neighbours import VectorIndex, recall_at_k
    from querylearn.userfile import read_user_vectors

    t0 = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    gen = generate_synthetic_log(args.users, seed=args.seed)
    users = sorted(gen.queries["user_id"].unique())
    rng = np.random.default_rng(args.seed)
    new = set(rng.choice(users, size=len(users) // 5, replace=False).tolist())
    log = gen.queries[["user_id", "timestamp", "query"]]
    known_log, new_log = log[~log["user_id"].isin(new)], log[log["user_id"].isin(new)]
    known_log.to_csv(out / "known.csv", index=False)
    new_log.to_csv(out / "new.csv", index=False)
    for name in ("T2", "T7"):
        lab = gen.labels[name]
        lab[~lab["user_id"].isin(new)].to_csv(out / f"{name}.csv", index=False)
    (out / "tasks.toml").write_text(
        '[[task]]\nname = "T1"\nkind = "next_query"\n\n[[task]]\nname = "T2"\nkind = "multi_target"\n'
        'labels = "T2.csv"\n\n[[task]]\nname = "T7"\nkind = "classify"\nlabels = "T7.csv"\n',
        encoding="utf-8",
    )
    cli(
        "prepare",
        "files",
        "--queries",
        out / "known.csv",
        "--tasks",
        out / "tasks.toml",
        "--seq-len",
        "30",
        "--out",
        out / "ds",
    )
    # the text source: sentencepiece trained on the known queries (subwords), random BERT, subword mean
    known_queries = sorted(known_log["query"].unique())
    kobert_tiny.corpus_lines = lambda n=0, seed=0: known_queries
    model_dir = kobert_tiny.build_tiny_kobert(out / "kobert", hidden=64, vocab_size=3000, max_positions=64)
    cli("embed-init", "--data", out / "ds", "--source", "kobert", "--model", model_dir, "--out", out / "emb")
    t_train = time.perf_counter()
    cli(
        "train-sequence",
        "--data",
        out / "ds",
        "--out",
        out / "run",
        "--embeddings",
        out / "emb",
        "--epochs",
        args.epochs,
        "--tasks",
        args.tasks,
        "--seed",
        str(args.seed),
        "--threads",
        "1",
        "--no-progress",
        "--model.channels",
        str(args.channels),
        "--model.dilations",
        "[1, 2, 1, 2]",
    )
    t_train = time.perf_counter() - t_train
    cli("export-model", "--run", out / "run", "--out", out / "model", "--task", "T7")
    cli("export-users", "--run", out / "run", "--out", out / "export.parquet", "--task", "T7")
    cli(
        "export-users",
        "--run",
        out / "run",
        "--out",
        out / "export-test.parquet",
        "--task",
        "T7",
        "--users",
        "test",
    )
    results: dict = {
        "users": args.users,
        "known_users": len(users) - len(new),
        "new_user_count": len(new),
        "tasks": args.tasks,
        "epochs": args.epochs,
        "train_seconds": round(t_train, 1),
        "R": (out / "run" / "R.csv").read_text(encoding="utf-8"),
    }

    # 1. closeness on the held-out (test split) users of the known dataset
    cli(
        "embed-users",
        "--model",
        out / "model",
        "--queries",
        out / "known.csv",
        "--out",
        out / "known-emb.parquet",
    )
    ids_t, vec_t, _ = read_user_vectors(out / "export-test.parquet")
    ids_k, vec_k, _ = read_user_vectors(out / "known-emb.parquet")
    pos = {u: i for i, u in enumerate(ids_k)}
    mine = vec_k[[pos[u] for u in ids_t]]
    cos = (mine * vec_t).sum(1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(vec_t, axis=1) + 1e-12)
    results["closeness_test_users"] = {
        "n": len(ids_t),
        "max_abs_diff": float(np.abs(mine - vec_t).max()),
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
    }

    # 2. new users: map vs unk, ridge probe trained on the known training users' export vectors
    infos = {}
    vecs = {}
    for rule in ("map", "unk"):
        cli(
            "embed-users",
            "--model",
            out / "model",
            "--queries",
            out / "new.csv",
            "--out",
            out / f"new-{rule}.parquet",
            "--unseen",
            rule,
        )
        ids_n, vecs[rule], infos[rule] = read_user_vectors(out / f"new-{rule}.parquet")
    ids_e, vec_e, _ = read_user_vectors(out / "export.parquet")
    from querylearn.data.dataset import load_dataset

    ds = load_dataset(out / "ds")
    from querylearn.pretrained import UserEncoder

    enc = UserEncoder.from_pretrained(out / "model")
    hist = {
        u: list(g["query"])
        for u, g in new_log.sort_values(["user_id", "timestamp"], kind="stable").groupby("user_id")
    }
    last_unseen = np.array([enc.vocab.index.get(normalize_query(hist[u][-1])) is None for u in ids_n])
    train_rows = [i for i, u in enumerate(ds.user_ids) if ds.user_split[i] == 0]
    assert ids_e == ds.user_ids
    probe = {}
    for task in ("T7", "T2"):
        classes = sorted(gen.labels[task]["label"].unique())
        y_known = label_matrix(gen.labels[task], ids_e, classes)
        y_new = label_matrix(gen.labels[task], ids_n, classes)
        rows = [r for r in train_rows if y_known[r].any()]
        has = y_new.any(axis=1)
        probe[task] = {
            "n_new_users": int(has.sum()),
            "n_train_users": len(rows),
            "majority": float(y_new[has].mean(0).max()),
        }
        probe[task]["n_last_query_unseen"] = int((has & last_unseen).sum())
        for rule in ("map", "unk"):
            scores = ridge_probe(vec_e[rows], y_known[rows], vecs[rule][has])
            hit = y_new[has][np.arange(has.sum()), scores.argmax(1)]
            probe[task][rule] = float(hit.mean())
            probe[task][f"{rule}_last_query_unseen"] = float(hit[last_unseen[has]].mean())
    cos_mu = (vecs["map"] * vecs["unk"]).sum(1) / (
        np.linalg.norm(vecs["map"], axis=1) * np.linalg.norm(vecs["unk"], axis=1) + 1e-12
    )
    results["new_users"] = {
        "positions": infos["map"]["positions"],
        "unseen_positions": infos["map"]["unseen_mapped_positions"] + infos["map"]["unseen_unk_positions"],
        "unseen_mapped_positions": infos["map"]["unseen_mapped_positions"],
        "unseen_mapped_queries": infos["map"]["unseen_mapped_queries"],
        "cosine_map_vs_unk": {"mean": float(cos_mu.mean()), "min": float(cos_mu.min())},
        "probe": probe,
    }
    model_cfg = json.loads((out / "model" / "config.json").read_text(encoding="utf-8"))
    results["map_fit"] = model_cfg["unseen_queries"]["map"]

    # 3. ANN recall@10 against exact search
    from querylearn.embeddings import load_embedding_table

    table = np.asarray(load_embedding_table(out / "emb").vectors)[2:]
    trained = UserEncoder.from_pretrained(out / "model").input_vectors()[2:]
    ann = {}
    for name, x in (("query_table", table), ("trained_query_vectors", trained), ("users", vec_e)):
        keys = [str(i) for i in range(len(x))]
        q = x[np.random.default_rng(1).choice(len(x), size=min(1000, len(x)), replace=False)]
        t = time.perf_counter()
        exact = VectorIndex(x, keys, method="exact").search(q, 10)
        t_exact = time.perf_counter() - t
        truth = np.array([[n.row for n in r] for r in exact])
        entry = {"rows": len(x), "dim": int(x.shape[1]), "queries": len(q), "exact_s": round(t_exact, 3)}
        for ef in (16, 64, 128):
            t = time.perf_counter()
            index = VectorIndex(x, keys, method="hnsw", ef_search=ef, threads=1)
            t_build = time.perf_counter() - t
            t = time.perf_counter()
            found = np.array([[n.row for n in r] for r in index.search(q, 10)])
            entry[f"ef{ef}"] = {
                "recall@10": round(recall_at_k(found, truth), 4),
                "build_s": round(t_build, 3),
                "search_s": round(time.perf_counter() - t, 3),
            }
        ann[name] = entry
    results["ann"] = ann
    results["seconds"] = round(time.perf_counter() - t0, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
