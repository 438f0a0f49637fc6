"""Task data and batching for train-sequence: devices, per-task examples, task order, batches.

Evaluation iterates over every row of a split in stored order (never dropped, never shuffled);
training batches are permutations of the train rows (``batches``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from querylearn.continual.protocol import TaskData
from querylearn.data.dataset import Dataset
from querylearn.data.splits import SPLIT_NAMES
from querylearn.errors import ArtifactError, ConfigError, DataError


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available else cpu; other torch device strings must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a torch device (use auto, cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"device {name!r} is not available here ({torch.cuda.device_count()} CUDA devices); "
            "use --device auto or cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} is not available here; use --device auto or cpu")
    return device


def task_data(ds: Dataset, name: str) -> TaskData:
    """The task's examples by split, with label range checks."""
    t = ds.task(name)
    n_classes = len(ds.vocab) if t.kind == "next_query" else int(t.n_labels)
    if len(t.label) and (t.label.min() < 0 or t.label.max() >= n_classes):
        raise ArtifactError(
            f"{ds.path}/tasks/{name}.npz: labels must lie in [0, {n_classes}), found "
            f"{t.label.min()}..{t.label.max()} (re-create the dataset with 'querylearn prepare')"
        )
    users, labels = {}, {}
    for split in SPLIT_NAMES:
        rows = t.rows(split)
        users[split] = t.user_index[rows].astype(np.int64)
        labels[split] = t.label[rows].astype(np.int64)
    return TaskData(name=name, kind=t.kind, metric=t.metric, n_classes=n_classes, users=users, labels=labels)


def load_input_vectors(emb_dir: str | Path, ds: Dataset) -> np.ndarray:
    """Input-embedding init [V, D] float32 aligned with the dataset vocabulary.

    ``emb_dir`` is an EmbeddingTable from ``embed-init`` (meta.json + vocab.json + vectors.npy),
    loaded and vocabulary-checked with ``querylearn.embeddings.table``.
    """
    from querylearn.embeddings.table import load_embedding_table  # the embed-init artifact

    emb_dir = Path(emb_dir)
    if not (emb_dir / "meta.json").is_file():
        raise ArtifactError(
            f"{emb_dir}: not an embedding table (no meta.json); create one with "
            f"'querylearn embed-init --data DATASET --out {emb_dir}'"
        )
    table = load_embedding_table(emb_dir)
    table.check_vocab(ds.vocab)
    vectors = np.asarray(table.vectors)
    if vectors.ndim != 2 or vectors.shape[0] != len(ds.vocab):
        raise ArtifactError(
            f"{emb_dir}/vectors.npy: expected [{len(ds.vocab)}, D] (one row per query of "
            f"{ds.path}/vocab.json), found {list(vectors.shape)}"
        )
    if not np.issubdtype(vectors.dtype, np.floating) or not np.isfinite(vectors).all():
        raise ArtifactError(f"{emb_dir}/vectors.npy: vectors must be finite floats")
    return vectors.astype(np.float32)


def resolve_task_order(ds: Dataset, requested: tuple[str, ...] | list[str]) -> list[str]:
    """The dataset's order, or ``requested``; names must exist, appear once, and the dataset's
    next_query task (T1, which defines the input vocabulary) must come first when it is used."""
    order = list(requested) if requested else ds.task_names
    for name in order:
        if name not in ds.task_names:
            raise ConfigError(f"task '{name}' is not in {ds.path}; available: {', '.join(ds.task_names)}")
    dup = sorted({n for n in order if order.count(n) > 1})
    if dup:
        raise ConfigError(f"task '{dup[0]}' is listed twice in --tasks")
    kinds = {t.name: t.kind for t in ds.tasks}
    nq = [n for n in order if kinds[n] == "next_query"]
    if nq and order[0] != nq[0]:
        raise ConfigError(
            f"the next_query task '{nq[0]}' must come first (T1 defines the vocabulary); "
            f"got order {','.join(order)}"
        )
    return order


def check_tasks(ds: Dataset, order: list[str]) -> None:
    """Every task needs training rows; next_query needs sequences of at least 2 positions."""
    for name in order:
        t = ds.task(name)
        if len(t.rows("train")) == 0:
            raise DataError(
                ds.path / "tasks" / f"{name}.npz",
                "no training rows",
                fix="re-create the dataset with more users or leave the task out with --tasks",
            )
        if t.kind == "next_query" and ds.seq_len < 2:
            raise DataError(
                ds.path / "sequences.npy",
                f"seq_len {ds.seq_len} < 2: next_query needs an input and a target",
                fix="prepare with --seq-len 2 or more",
            )


def batches(n: int, batch_size: int, rng: np.random.Generator | None, drop_last: bool) -> list[np.ndarray]:
    """Row indices of each batch: a permutation of ``range(n)`` (stored order without ``rng``)."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


def user_batches(
    users: np.ndarray, pair_budget: int, rng: np.random.Generator | None, drop_last: bool
) -> list[tuple[float, np.ndarray]]:
    """Per-user batches of a multi_target task (``multi_target_batching = "user"``).

    users [n] (the user of every train row) -> [(b, rows)]: every row exactly once, all rows of a
    user in the same batch (grouped by user, users in shuffled order; stored order without ``rng``).
    Users are laid end to end in that order and a batch holds the users whose first row falls in
    one window of ``pair_budget`` rows (window k = rows [k·B, (k+1)·B)), so a batch holds about B
    (user, target) pairs, one user with more than B targets forms a batch alone, and an epoch has at
    most ceil(n / B) steps as with pair batches. ``b`` = rows before the batch / B (the batch index of
    the s annealing, Eq. 19, as a float). ``drop_last`` drops the users of the last, incomplete window.
    """
    n = len(users)
    if n == 0:
        return []
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    by_user = np.argsort(inverse, kind="stable")  # rows grouped by user, stored order within a user
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each user's first position in by_user
    order = rng.permutation(len(counts)) if rng is not None else np.arange(len(counts))
    sizes = counts[order]
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # rows before each user in the epoch order
    window = start // pair_budget
    if drop_last and n % pair_budget:
        keep = window < n // pair_budget
        order, sizes, start, window = order[keep], sizes[keep], start[keep], window[keep]
    if not len(order):
        return []
    total = int(sizes.sum())
    rows = by_user[np.arange(total) + np.repeat(first[order] - start, sizes)]  # [total] in epoch order
    bounds = np.flatnonzero(np.diff(window)) + 1  # first user of each new batch
    lows = np.concatenate([[0], start[bounds]])
    highs = np.concatenate([start[bounds], [total]])
    return [(int(lo) / pair_budget, rows[int(lo) : int(hi)]) for lo, hi in zip(lows, highs, strict=True)]


def task_batches(
    t: TaskData, batch_size: int, rng: np.random.Generator | None, drop_last: bool, mode: str
) -> list[tuple[float, np.ndarray]]:
    """[(b, rows)] of one epoch of task ``t``: per-user batches (``user_batches``) for a
    multi_target task when ``mode`` ("multi_target_batching") is "user", else pair batches
    (``batches``, b = 0, 1, 2, ...; next_query and classify tasks have one row per user)."""
    if mode == "user" and t.kind == "multi_target":
        return user_batches(t.users["train"], batch_size, rng, drop_last)
    return list(enumerate(batches(t.n("train"), batch_size, rng, drop_last)))
