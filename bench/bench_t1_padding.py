"""Seconds per T1 training step, parity vs padding-exact model, at the official sizes, in one sitting.

For batches of 32 users of ``--data`` (a ``querylearn prepare`` dataset) whose longest sequence has
``--max-lengths`` real queries, times one full step (next_query_loss over the vocabulary, backward,
fused Adam) of the official-size model (width 256, 8 blocks) with ``model.padding = "parity"``
(every position computed) and ``"exact"`` (the batch's common padding prefix skipped), alternating
the two ``--repeats`` times on the same batch, and prints the medians::

    python bench/bench_t1_padding.py --data /tmp/ml100k --threads 1 --max-lengths 30 22 15

With length-bucketed batches (``length_buckets = true``) most T1 batches of MovieLens-100K have a
longest sequence well below seq_len, which is where the exact model saves work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from querylearn.continual.config import TrainConfig
from querylearn.continual.losses import next_query_loss
from querylearn.data.dataset import load_dataset
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--max-lengths", type=int, nargs="+", default=[30, 22, 15])
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    seqs = np.asarray(ds.sequences)
    lengths = (seqs != 0).sum(1)
    vocab = len(ds.vocab)
    config, generator, rng = TrainConfig(), torch.Generator(), np.random.default_rng(0)
    models, optimizers = {}, {}
    for padding in ("parity", "exact"):
        torch.manual_seed(0)
        models[padding] = UserEncoder(vocab, ModelConfig(padding=padding), next_query_task="T1")
        models[padding].add_task("T1", vocab)
        optimizers[padding] = torch.optim.Adam(models[padding].parameters(), lr=1e-3, fused=True)

    def step(padding: str, ids: torch.Tensor) -> float:
        t0 = time.perf_counter()
        loss, _ = next_query_loss(models[padding], ids, "T1", 10.0, config, generator)
        optimizers[padding].zero_grad()
        loss.backward()
        optimizers[padding].step()
        return time.perf_counter() - t0

    for max_len in args.max_lengths:
        rows = rng.choice(np.flatnonzero(lengths <= max_len), 32, replace=False)
        rows[0] = np.flatnonzero(lengths == max_len)[0]  # the batch's longest sequence
        ids = torch.as_tensor(seqs[rows]).long()
        times: dict[str, list[float]] = {"parity": [], "exact": []}
        for padding in times:
            step(padding, ids)  # warm-up
        for _ in range(args.repeats):
            for padding in times:
                times[padding].append(step(padding, ids))
        medians = {k: float(np.median(v)) for k, v in times.items()}
        print(json.dumps({"max_length": int(max_len), "seconds_per_step": medians,
                          "exact_over_parity": medians["exact"] / medians["parity"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
