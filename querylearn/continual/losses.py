"""Task losses of train-sequence (docs/algorithms.md#task-losses).

- next_query: input x[:, :L-1], targets x[:, 1:], softmax CE over every position (padding targets
  kept unless ``next_query.ignore_padding``; optional sampled softmax over the batch's targets plus
  uniform negatives). A copy head's loss adds ``next_query.generator_aux`` × the CE of its
  softmax generator alone (the pointer-generator's auxiliary term).
- multi_target / classify: input the full sequence, readout at the last position, softmax CE over
  the task's labels; multi-target users contribute one example per target.
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
    model.heads.copy_grad = nq.copy_grad  # where the copy path's gradient goes (#next-query-heads)
    out = model(inputs, task, s=s, all_positions=True, candidates=candidates)
    flat = targets.reshape(-1)
    loss = _position_ce(out.logits, flat, keep)
    if nq.generator_aux > 0 and model.heads.has_copy(task):  # + λ CE(generator alone) (#next-query-heads)
        gen = model.heads.generator_logits(out.hidden, task, candidates, item_vectors=model.item_vectors)
        loss = loss + nq.generator_aux * _position_ce(gen, flat, keep)
    return loss, out


def _position_ce(logits: torch.Tensor, flat: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean CE of logits [B, L-1, S] against flat targets [B(L-1)] over the kept positions."""
    logits = logits.reshape(-1, logits.shape[-1])  # [B(L-1), S]
    if keep is None:
        return F.cross_entropy(logits, flat)
    per_position = F.cross_entropy(logits, flat, reduction="none")
    return (per_position * keep).sum() / keep.sum().clamp_min(1)


def label_loss(model: UserEncoder, batch: Batch, s: float) -> tuple[torch.Tensor, EncoderOutput]:
    """Softmax CE on the last position (#task-losses); each distinct sequence is encoded once."""
    out = model(batch.ids, batch.task, s=s)  # logits [U, C]
    logits = out.logits[batch.inverse]  # [B, C]
    return F.cross_entropy(logits, batch.labels), out
