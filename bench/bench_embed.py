"""Benchmark embed-init's poolings: queries/s for 100k synthetic Korean queries, and peak RSS.

Usage::

    python bench/bench_embed.py [--queries 100000] [--contextual-queries 100000] [--threads 2]

- ``subword-mean``: KoBERT tokenisation (sentencepiece re-implementation) + embedding-bag lookup on a
  KoBERT-width table (768-d, 1 layer; only the input embeddings are used). Reported separately:
  tokenisation alone, pooling alone, both (``embed`` with ``--threads`` torch threads), and both on
  one torch thread in the same sitting (the baseline; its vectors must be identical).
- The straightforward tokenisation, same sitting (the reference of ``bench/run_all.py``): one query
  at a time (``encode`` in a loop); it must give identical ids. And the batched tokenisation without
  sentencepiece's id buffers (its public list-of-ints call), also with identical ids.
- ``contextual``: the tiny test model (32-d, 2 layers, 2 heads), batched forward passes, batch 64.
Models are built offline by ``tests/kobert_tiny.py``. Results: a table on stdout and
``bench/results/embed.json``. Peak RSS is the process high-water mark after each phase.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def synthetic_queries(n: int, seed: int = 0) -> list[str]:
    """Korean product-search-like queries: 1-4 words from the tiny corpus words + random syllables."""
    sys.path.insert(0, str(ROOT / "tests"))
    from kobert_tiny import WORDS

    rng = random.Random(seed)
    syllables = [chr(0xAC00 + i) for i in range(0, 11172, 37)]
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.7:
                words.append(rng.choice(WORDS))
            else:
                words.append("".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))))
        out.append(" ".join(words))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100_000)
    parser.add_argument("--contextual-queries", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embed.json")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="EmbedInitConfig key=value (batch_size, max_length, include_special)",
    )
    args = parser.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from kobert_tiny import build_tiny_kobert

    from querylearn.config_loader import load_config, parse_sets
    from querylearn.embeddings.base import EmbedInitConfig, TokenizedBatch
    from querylearn.embeddings.kobert import load_kobert

    cfg = load_config(EmbedInitConfig, None, parse_sets(args.set))  # embed-init's defaults, written once

    queries = synthetic_queries(args.queries)
    results: dict = {
        "n_queries": args.queries,
        "threads": args.threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": __import__("os").cpu_count(),
        "rss_start_mb": round(peak_rss_mb(), 1),
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        wide = build_tiny_kobert(Path(tmp) / "wide", hidden=768, layers=1, heads=12)
        tiny = build_tiny_kobert(Path(tmp) / "tiny")
        emb = load_kobert(
            str(wide),
            pooling="subword-mean",
            include_special=cfg.include_special,
            batch_size=cfg.batch_size,
            max_length=cfg.max_length,
        )
        emb.embed(queries[:1000])  # warm-up (regex table, allocator)

        t = time.perf_counter()
        batch = emb.tokenizer.encode_batch(queries)
        t_tok = time.perf_counter() - t
        # the same sitting with sentencepiece's public list-of-ints call (the path before the id
        # buffers, and the one used where the buffers are unavailable); it must give the same ids
        used_buffers = emb.tokenizer._buffers_ok
        emb.tokenizer._buffers_ok = False
        t = time.perf_counter()
        listed = emb.tokenizer.encode_batch(queries)
        t_tok_list = time.perf_counter() - t
        emb.tokenizer._buffers_ok = used_buffers
        if not (
            np.array_equal(listed.flat_ids, batch.flat_ids) and np.array_equal(listed.offsets, batch.offsets)
        ):
            sys.exit("the id buffers give other ids than sentencepiece's public call")
        t = time.perf_counter()
        vectors, _, _ = emb.pool(batch)
        t_pool = time.perf_counter() - t
        t = time.perf_counter()
        out = emb.embed(queries)
        t_all = time.perf_counter() - t
        assert out.vectors.shape == (len(queries), 768)
        # the baseline: the same call on one torch thread
        torch.set_num_threads(1)
        t = time.perf_counter()
        single = emb.embed(queries)
        t_single = time.perf_counter() - t
        torch.set_num_threads(args.threads)
        if not np.array_equal(single.vectors, out.vectors):
            sys.exit(f"the vectors on {args.threads} threads differ from those on one thread")
        # the straightforward tokenisation, same sitting: one query at a time
        t = time.perf_counter()
        loop = TokenizedBatch.from_lists([emb.tokenizer.encode(q, add_special_tokens=False) for q in queries])
        t_loop = time.perf_counter() - t
        if not (
            np.array_equal(loop.flat_ids, batch.flat_ids) and np.array_equal(loop.offsets, batch.offsets)
        ):
            sys.exit("the batched tokenisation differs from the one-query-at-a-time loop")
        results["mean_subwords"] = out.counts["mean_subwords"]
        rss = round(peak_rss_mb(), 1)
        for name, sec in (
            ("tokenise only (KoBERT rules)", t_tok),
            ("tokenise with sentencepiece's list of ints (no id buffers)", t_tok_list),
            ("tokenise one query at a time (straightforward loop)", t_loop),
            ("subword-mean lookup only (768-d)", t_pool),
            ("subword-mean total (embed)", t_all),
            ("subword-mean total, one torch thread", t_single),
        ):
            results["rows"].append(
                {
                    "phase": name,
                    "seconds": round(sec, 4),
                    "queries_per_s": round(len(queries) / sec),
                    "peak_rss_mb": rss,
                }
            )

        n_ctx = min(args.contextual_queries, len(queries))
        # the tiny model has 64 positions
        ctx = load_kobert(
            str(tiny),
            pooling="contextual",
            include_special=cfg.include_special,
            batch_size=cfg.batch_size,
            max_length=min(cfg.max_length, 64),
        )
        t = time.perf_counter()
        ctx_out = ctx.embed(queries[:n_ctx])
        t_ctx = time.perf_counter() - t
        assert ctx_out.vectors.shape == (n_ctx, 32)
        results["rows"].append(
            {
                "phase": f"contextual total (tiny 32-d x 2 layers, {n_ctx} queries)",
                "seconds": round(t_ctx, 4),
                "queries_per_s": round(n_ctx / t_ctx),
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    results["peak_rss_mb"] = round(peak_rss_mb(), 1)

    width = max(len(r["phase"]) for r in results["rows"])
    print(f"{'phase':<{width}}  {'seconds':>8}  {'queries/s':>10}  {'peak RSS MB':>11}")
    for r in results["rows"]:
        print(
            f"{r['phase']:<{width}}  {r['seconds']:>8.3f}  "
            f"{r['queries_per_s']:>10,}  {r['peak_rss_mb']:>11.1f}"
        )
    print(
        f"{args.queries:,} queries, {results['mean_subwords']:.2f} subwords/query, "
        f"{args.threads} torch threads"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
