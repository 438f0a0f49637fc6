"""Length-bucketed training batches (docs/train-sequence.md, ``length_buckets``).

Rows of similar sequence length go into the same batch, so that with ``model.padding = "exact"``
a batch's common all-padding prefix (which the encoder does not compute) is long. Every row
appears in exactly one batch per epoch, as with :func:`querylearn.continual.data.batches`; what
changes is which rows share a batch.
"""

from __future__ import annotations

import numpy as np

from querylearn.continual.data import batches
from querylearn.continual.protocol import TaskData

WINDOW_BATCHES = 50  # rows are sorted by length within windows of this many batches


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, drop_last: bool
) -> list[np.ndarray]:
    """Row indices of each batch: a random permutation of ``range(len(lengths))`` (the last partial
    batch's rows left out with ``drop_last``), cut into windows of ``WINDOW_BATCHES`` batches, each
    window sorted by length (stable, so equal lengths keep their random order) and cut into
    batches; the batch order is then shuffled. lengths [N] -> list of [<= batch_size] int arrays."""
    n = len(lengths)
    order = rng.permutation(n)
    if drop_last:
        order = order[: (n // batch_size) * batch_size]
    window = WINDOW_BATCHES * batch_size
    out: list[np.ndarray] = []
    for w in range(0, len(order), window):
        rows = order[w : w + window]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        out.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    return [out[i] for i in rng.permutation(len(out))]


def epoch_batches(
    task: TaskData,
    batch_size: int,
    rng: np.random.Generator,
    drop_last: bool,
    seq_lengths: np.ndarray | None,
) -> list[np.ndarray]:
    """One epoch's training batches of ``task`` (rows of its train split): shuffled batches, or with
    ``seq_lengths`` [n_users] (real positions per user sequence) length-bucketed ones."""
    if seq_lengths is None:
        return batches(task.n("train"), batch_size, rng, drop_last)
    return length_bucketed_batches(seq_lengths[task.users["train"]], batch_size, rng, drop_last)
