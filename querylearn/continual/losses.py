"""Task losses of train-sequence (docs/algorithms.md#task-losses).

- next_query: input x[:, :L-1], targets x[:, 1:], softmax CE over every position (padding targets
  kept unless ``next_query.ignore_padding``; optional sampled softmax over the batch's targets plus
  uniform negatives).
- multi_target / classify: input the full sequence, readout at the last position, softmax CE over
  the task's labels; multi-target users contribute one example per target (``label_loss``; with
  per-user batches the same mean as one multi-positive softmax per user, ``multi_positive_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from querylearn.continual.config import TrainConfig
from querylearn.continual.protocol import Batch
from querylearn.data.vocab import PAD_ID
from querylearn.models.user_encoder import EncoderOutput, UserEncoder


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
    """
    inputs, targets = ids[:, :-1], ids[:, 1:].contiguous()  # [B, L-1]
    nq = config.next_query
    keep = (targets != PAD_ID).reshape(-1) if nq.ignore_padding else None  # [B(L-1)]
    candidates = None
    if nq.sampled_softmax > 0:
        vocab = model.heads.n_classes(task)
        negatives = torch.randint(vocab, (nq.sampled_softmax,), generator=generator).to(ids.device)
        candidates = torch.unique(torch.cat([targets.reshape(-1), negatives]))  # sorted [S]
        targets = torch.searchsorted(candidates, targets)  # positions in the candidate list
    out = model(inputs, task, s=s, all_positions=True, candidates=candidates)
    logits = out.logits.reshape(-1, out.logits.shape[-1])  # [B(L-1), S]
    flat = targets.reshape(-1)
    if keep is None:
        return F.cross_entropy(logits, flat), out
    per_position = F.cross_entropy(logits, flat, reduction="none")
    return (per_position * keep).sum() / keep.sum().clamp_min(1), out


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
