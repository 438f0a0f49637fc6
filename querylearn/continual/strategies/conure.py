"""CONURE (ALGORITHMS.md 6.6) on the NextItNet backbone: per-task binary masks over the conv weights.

Per task t (two phases, each a full fit with a fresh optimiser):
  phase 1 "train":   W_eff = stopgrad(W ⊙ F) + W ⊙ (1 - F),  F = M_1 ∪ ... ∪ M_{t-1}
  prune:             M_t = top-r_t entries of |W ⊙ (1 - F)| per conv tensor, r_t = floor(c_t n_W),
                     c_t = (Π_{j<t} p)(1 - p)
  phase 2 "retrain": W_eff = stopgrad(W ⊙ F) + W ⊙ M_t
Inference for task j: W ⊙ (M_1 ∪ ... ∪ M_j) with head j. The item embedding, input projection,
LayerNorms and conv biases are trained only in T1's first phase and frozen afterwards, so past
tasks' outputs stay bit-identical (BWT = 0). Entries of F are also restored after every step, so no
optimiser quirk can move them. Same heads and softmax CE as the other strategies (the section's
recommended common protocol), not [C]'s BPR losses.
"""

from __future__ import annotations

import math

import torch

from querylearn.continual.protocol import ContinualStrategy, TaskData, TrainContext
from querylearn.continual.strategies import STRATEGIES


def prune_mask(weight: torch.Tensor, frozen: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask of the ``keep`` largest |weight| entries outside ``frozen`` (same shape as weight)."""
    score = weight.detach().abs().masked_fill(frozen, -1.0).reshape(-1)
    keep = max(0, min(keep, int((~frozen).sum())))
    mask = torch.zeros_like(score, dtype=torch.bool)
    if keep:
        mask[torch.topk(score, keep).indices] = True
    return mask.reshape(weight.shape)


@STRATEGIES.register("conure")
class Conure(ContinualStrategy):
    name = "conure"
    masking = "conure"
    n_phases = 2

    def __init__(self, config):
        super().__init__(config)
        self.p = config.conure.prune
        self._frozen: list[torch.Tensor] | None = None
        self._saved: list[torch.Tensor] | None = None

    def _past_union(self, model, task: str) -> list[torch.Tensor]:
        names = model.task_names[: model.task_index(task)]
        weights = model.backbone.conv_weights()
        if not names:
            return [torch.zeros_like(w, dtype=torch.bool) for w in weights]
        union = torch.stack([getattr(model.weight_masks, n) for n in names]).any(dim=0)
        return [union[i] for i in range(len(weights))]

    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        model = ctx.model
        position = model.task_index(task.name)
        frozen = self._past_union(model, task.name)
        own = getattr(model.weight_masks, task.name)
        shared = [model.item_embedding, model.input_proj] + [
            m for b in model.backbone.blocks for m in (b.ln1, b.ln2)
        ]
        train_shared = position == 0 and ctx.phase == 0
        for module in shared:
            if module is not None:
                for p in module.parameters():
                    p.requires_grad_(train_shared)
        for b in model.backbone.blocks:
            for conv in (b.conv1.conv, b.conv2.conv):
                conv.bias.requires_grad_(train_shared)
        self._frozen = frozen
        self._saved = [w.detach().clone() for w in model.backbone.conv_weights()]
        retrain = ctx.phase == 1

        def override(name: str) -> list[torch.Tensor]:
            weights = model.backbone.conv_weights()
            if name != task.name:  # a past task: its inference weights
                return _inference(model, name)
            out = []
            for i, w in enumerate(weights):
                trainable = own[i] if retrain else ~frozen[i]
                out.append((w * frozen[i]).detach() + w * trainable)
            return out

        model.weight_override = override

    def after_step(self, ctx: TrainContext) -> None:
        with torch.no_grad():
            for w, frozen, saved in zip(
                ctx.model.backbone.conv_weights(), self._frozen, self._saved, strict=True
            ):
                w.copy_(torch.where(frozen, saved, w))

    def after_task(self, ctx: TrainContext, task: TaskData) -> None:
        model = ctx.model
        if ctx.phase == 0:
            position = model.task_index(task.name)
            fraction = (self.p**position) * (1.0 - self.p)  # c_t of the whole tensor
            own = getattr(model.weight_masks, task.name)
            with torch.no_grad():
                for i, w in enumerate(model.backbone.conv_weights()):
                    own[i] = prune_mask(w, self._frozen[i], int(math.floor(fraction * w.numel())))
        else:
            model.weight_override = None


def _inference(model, name: str) -> list[torch.Tensor]:
    override, model.weight_override = model.weight_override, None
    try:
        return model.conure_weights(name)
    finally:
        model.weight_override = override
