"""Evaluation of one task's split: ranking metrics over every row, in stored order.

next_query: input x[:, :L-1], target = the last query, readout at the last position, full ranking
over the vocabulary (padding excluded unless configured otherwise). Other tasks: the full sequence.
Every task is evaluated at the model's evaluation scale ``model.smax`` with its own mask and head.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from querylearn.continual import distributed
from querylearn.continual.config import TrainConfig
from querylearn.continual.protocol import TaskData
from querylearn.data.vocab import PAD_ID
from querylearn.metrics import ranking_metrics
from querylearn.models.user_encoder import UserEncoder
from querylearn.ranking import DEFAULT_CLASS_CHUNK, target_ranks


def evaluate(
    model: UserEncoder,
    task: TaskData,
    split: str,
    sequences: torch.Tensor,
    *,
    config: TrainConfig,
    batch_size: int,
    class_chunk: int = DEFAULT_CLASS_CHUNK,
) -> dict[str, float | int | None]:
    """Ranking metrics (mrr/hr/ndcg@5/20, accuracy = hit@1) over every row of ``split``.

    sequences [n_users, L]. Ranks are counted in torch (number of strictly higher logits, as in
    querylearn.metrics), over at most ``class_chunk`` classes at a time (see :func:`row_ranks`).
    """
    return metrics_of_ranks(row_ranks(model, task, split, sequences, config=config, batch_size=batch_size,
                                      class_chunk=class_chunk))


def metrics_of_ranks(rank_arr: np.ndarray) -> dict[str, float | int | None]:
    """The named metrics of :func:`evaluate` (+ ``n``) from per-row 0-based ranks [N]."""
    metrics: dict[str, float | int | None] = {
        k: (None if math.isnan(v) else v) for k, v in ranking_metrics(rank_arr, (5, 20)).items()
    }
    metrics["n"] = int(len(rank_arr))
    return metrics


@torch.no_grad()
def row_ranks(
    model: UserEncoder,
    task: TaskData,
    split: str,
    sequences: torch.Tensor,
    *,
    config: TrainConfig,
    batch_size: int,
    class_chunk: int = DEFAULT_CLASS_CHUNK,
) -> np.ndarray:
    """0-based rank of the target of every row of ``split`` in stored order -> [N] int64
    (the per-row outcomes behind :func:`evaluate`; ``RUN_DIR/ranks.npz`` keeps the test ones).

    Heads whose logits are per-class scores are scored over at most ``class_chunk`` classes at a time
    (querylearn.ranking: bounded memory for 10^6 queries, the same ranks); a copy head's log-mixture is
    normalised over the classes it scores, so it is scored over all classes at once. Under torchrun each
    rank scores its share of the rows and every rank returns all of them (in order)."""
    was_training = model.training
    model.eval()
    device = sequences.device
    rows = distributed.shard_slice(task.n(split))  # this rank's rows; ranks are gathered below
    users, labels = task.users[split][rows], task.labels[split][rows]
    n_classes = model.heads.n_classes(task.name)
    chunk = n_classes if getattr(model.heads.heads[task.name], "copy", False) else class_chunk
    exclude_pad = task.kind == "next_query" and config.next_query.exclude_padding_from_ranking
    excluded = (PAD_ID,) if exclude_pad else ()
    masks = model.task_masks(task.name, model.smax)
    ranks = []
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        y = torch.as_tensor(labels[start : start + batch_size], device=device)
        uniq, inv = np.unique(u, return_inverse=True)
        x = sequences[torch.as_tensor(uniq, device=device)]  # [U, L]
        if task.kind == "next_query":
            x = x[:, :-1]
        inv_t = torch.as_tensor(inv, device=device)
        hidden = model.encode(x, masks, task=task.name)[inv_t]  # [B, C]
        ids = x[inv_t]

        def score(h: torch.Tensor, cand: torch.Tensor | None, ids: torch.Tensor = ids) -> torch.Tensor:
            return model.head_logits(h, task.name, cand, ids=ids)  # [B, n | S]

        ranks.append(target_ranks(hidden, score, n_classes, y, excluded=excluded, chunk=chunk).cpu())
    model.train(was_training)
    local = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.int64)
    return distributed.gather_ranks(local).numpy()


def selection_value(metrics: dict, task: TaskData, selection: str) -> float | None:
    """The validation value early stopping compares ("task" = the task's own headline metric)."""
    key = task.metric if selection == "task" else selection
    v = metrics.get(key)
    return None if v is None else float(v)
