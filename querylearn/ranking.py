"""Target ranks over a large class set in bounded memory (pure torch).

The rank of the target is the number of classes with a strictly higher logit (0 = top), the rule of
:mod:`querylearn.metrics` and of ``continual.evaluation.evaluate``. Over a vocabulary of 10^6 queries the
full ``[B, V]`` logit matrix of one batch does not fit comfortably, so the classes are scored in chunks of
``chunk`` columns and each chunk only adds its count of higher logits: peak memory is ``[B, chunk]``
whatever ``V`` is. When ``V <= chunk`` the logits are computed exactly as the full computation does (one
call without candidates), so small vocabularies give bit-identical ranks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# 65,536 classes per chunk: a batch of 512 rows holds 128 MiB of float32 logits at most
DEFAULT_CLASS_CHUNK = 1 << 16

ScoreFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def target_ranks(
    hidden: torch.Tensor,
    score: ScoreFn,
    n_classes: int,
    target: torch.Tensor,
    *,
    excluded: tuple[int, ...] = (),
    chunk: int = DEFAULT_CLASS_CHUNK,
) -> torch.Tensor:
    """0-based rank of ``target`` for each row: count of classes with a strictly higher logit.

    hidden [B, C]; ``score(hidden, candidates)`` -> logits [B, S] for the class ids ``candidates`` [S]
    (``candidates=None``: all ``n_classes``); target [B] int64 -> ranks [B] int64 (on hidden's device).
    ``excluded`` class ids score ``-inf`` (never above the target; a target among them gets ``-inf`` too).

    Chunked path (``n_classes > chunk``): the target's logit is computed once per row from its own class
    row (``score`` on the batch's targets), and in every chunk the target's own column is left out of the
    count, so a target is never counted above itself even if two matrix products round differently.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
    target = target.to(device=hidden.device, dtype=torch.int64)
    if n_classes <= chunk:
        logits = score(hidden, None)  # [B, n]
        if excluded:
            logits[:, list(excluded)] = float("-inf")
        t = logits.gather(1, target[:, None])  # [B, 1]
        return (logits > t).sum(dim=1)
    # the target's own logit: diagonal of the [B, B] scores against the batch's target classes
    t = score(hidden, target).diagonal()[:, None].clone()  # [B, 1]
    ex = torch.as_tensor(list(excluded), dtype=torch.int64, device=hidden.device)
    if len(excluded):
        t[torch.isin(target, ex)] = float("-inf")
    ranks = torch.zeros(len(target), dtype=torch.int64, device=hidden.device)
    for start in range(0, n_classes, chunk):
        stop = min(start + chunk, n_classes)
        cand = torch.arange(start, stop, device=hidden.device)
        logits = score(hidden, cand)  # [B, S]
        if len(excluded):
            inside = ex[(ex >= start) & (ex < stop)] - start
            logits[:, inside] = float("-inf")
        higher = logits > t
        own = (target >= start) & (target < stop)
        if own.any():  # the target's column never counts against itself
            rows = torch.nonzero(own).squeeze(1)
            higher[rows, target[rows] - start] = False
        ranks += higher.sum(dim=1)
    return ranks
