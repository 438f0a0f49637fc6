"""Task losses of train-sequence (docs/algorithms.md#task-losses).

- next_query: input x[:, :L-1], targets x[:, 1:], softmax CE over every position (padding targets
  kept unless ``next_query.ignore_padding``; optional sampled softmax over the batch's targets plus
  uniform negatives). A copy head's loss adds ``next_query.generator_aux`` × the CE of its
  softmax generator alone (the pointer-generator's auxiliary term).
- multi_target / classify: input the full sequence, readout at the last position, softmax CE over
  the task's labels; multi-target users contribute one example per target (``label_loss``; with
  per-user batches the same mean as one multi-positive softmax per user, ``multi_positive_loss``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from querylearn.continual.config import TrainConfig
from querylearn.continual.protocol import Batch
from querylearn.data.vocab import PAD_ID
from querylearn.models.user_encoder import EncoderOutput, UserEncoder, padding_prefix


def next_query_loss(
    model: UserEncoder,
    ids: torch.Tensor,
    task: str,
    s: float,
    config: TrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, EncoderOutput]:
    """Autoregressive CE over all positions (#task-losses).

    ids [B, L] -> (loss, output with logits [B, L-1, S]).

    Sampled softmax (``next_query.sampled_softmax = K``): the candidates are the batch's distinct
    targets plus K uniform negatives (one shared set per batch); with uniform negatives the usual
    log-Q correction is a constant and is omitted.

    With ``model.config.padding == "exact"`` the ``drop`` leading input positions whose input and
    target are padding in every row are not computed (logits [B, L-1-drop, S]): their hidden state
    is zero, so each contributes the same CE (the head at a zero state, target pad), computed once
    and multiplied by B·drop (docs/algorithms.md#padding); loss and gradients equal the untrimmed.
    """
    n_positions = ids.shape[0] * (ids.shape[1] - 1)  # B(L-1), the mean's denominator
    drop = 0
    if model.config.padding == "exact":
        drop = min(max(padding_prefix(ids) - 1, 0), ids.shape[1] - 2)  # input and target both padding
        ids = ids[:, drop:]
    inputs, targets = ids[:, :-1], ids[:, 1:].contiguous()  # [B, L-1-drop]
    nq = config.next_query
    keep = (targets != PAD_ID).reshape(-1) if nq.ignore_padding else None  # [B(L-1-drop)]
    candidates = None
    pad_target = torch.full((1,), PAD_ID, dtype=targets.dtype, device=ids.device)
    if nq.sampled_softmax > 0:
        vocab = model.heads.n_classes(task)
        negatives = torch.randint(vocab, (nq.sampled_softmax,), generator=generator).to(ids.device)
        dropped = [pad_target] if drop else []  # the dropped positions' targets
        candidates = torch.unique(torch.cat([targets.reshape(-1), negatives, *dropped]))  # sorted [S]
        targets = torch.searchsorted(candidates, targets)  # positions in the candidate list
    model.heads.copy_grad = nq.copy_grad  # where the copy path's gradient goes (#next-query-heads)
    out = model(inputs, task, s=s, all_positions=True, candidates=candidates)
    flat = targets.reshape(-1)
    n_dropped = ids.shape[0] * drop  # positions not computed (exact padding), hidden state zero
    zero = out.hidden.new_zeros(1, 1, out.hidden.shape[-1])  # a padded position's hidden state
    pad_ids = torch.full((1, 1), PAD_ID, dtype=ids.dtype, device=ids.device)
    loss = _position_ce(
        out.logits, flat, keep, n_positions, n_dropped, pad_target,
        lambda: model.head_logits(zero, task, candidates, ids=pad_ids),
    )  # fmt: skip
    if nq.generator_aux > 0 and model.heads.has_copy(task):  # + λ CE(generator alone) (#next-query-heads)
        gen = model.heads.generator_logits(out.hidden, task, candidates, item_vectors=model.item_vectors)
        loss = loss + nq.generator_aux * _position_ce(
            gen, flat, keep, n_positions, n_dropped, pad_target,
            lambda: model.heads.generator_logits(zero, task, candidates, item_vectors=model.item_vectors),
        )  # fmt: skip
    return loss, out


def _position_ce(
    logits: torch.Tensor,
    flat: torch.Tensor,
    keep: torch.Tensor | None,
    n_positions: int,
    n_dropped: int,
    pad_target: torch.Tensor,
    pad_logits: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """Mean CE of logits [B, L', S] against flat targets [B L'] over the kept positions (all of
    them, or ``keep`` [B L']); with ``n_dropped`` > 0 (exact padding's uncomputed prefix) the mean
    is over ``n_positions`` = B(L-1) and each dropped position adds the CE of ``pad_logits()``
    (the head at a zero state) against ``pad_target`` [1]; dropped positions are never kept."""
    logits = logits.reshape(-1, logits.shape[-1])  # [B L', S]
    if keep is not None:
        per_position = F.cross_entropy(logits, flat, reduction="none")
        return (per_position * keep).sum() / keep.sum().clamp_min(1)
    if not n_dropped:
        return F.cross_entropy(logits, flat)
    dropped_sum = F.cross_entropy(pad_logits().reshape(1, -1), pad_target, reduction="sum") * n_dropped
    return (F.cross_entropy(logits, flat, reduction="sum") + dropped_sum) / n_positions


def label_loss(model: UserEncoder, batch: Batch, s: float) -> tuple[torch.Tensor, EncoderOutput]:
    """Softmax CE on the last position (#task-losses); each distinct sequence is encoded once."""
    out = model(batch.ids, batch.task, s=s)  # logits [U, C]
    logits = out.logits[batch.inverse]  # [B, C]
    return F.cross_entropy(logits, batch.labels), out


def multi_positive_loss(model: UserEncoder, batch: Batch, s: float) -> tuple[torch.Tensor, EncoderOutput]:
    """The pair-mean CE of ``label_loss`` as one multi-positive softmax per user (#task-losses):

        L = -(1 / |P|) Σ_u Σ_{t ∈ T_u} log softmax(z_u)_t

    P = the batch's (user, target) pairs, T_u = user u's targets in the batch, z_u [C] the logits of
    u's sequence. Equal to ``label_loss`` (each pair one example, as the official objective) but the
    log-softmax is computed once per user: [U, C] instead of [B, C].
    """
    out = model(batch.ids, batch.task, s=s)  # logits [U, C]
    log_p = F.log_softmax(out.logits.float(), dim=-1)  # [U, C]
    return -log_p[batch.inverse, batch.labels].mean(), out
