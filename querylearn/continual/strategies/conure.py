"""CONURE (SIGIR 2021; docs/algorithms.md#conure) on the NextItNet backbone: per-task binary masks
over the conv weights.

Per task t (two phases, each a full fit with a fresh optimiser):
  phase 1 "train":   W_eff = stopgrad(W ⊙ F) + W ⊙ (1 - F),  F = M_1 ∪ ... ∪ M_{t-1}
  prune:             M_t = top-r_t entries of |W ⊙ (1 - F)| per conv tensor, r_t = floor(c_t n_W),
                     c_t = (Π_{j<t} p)(1 - p)
  phase 2 "retrain": W_eff = stopgrad(W ⊙ F) + W ⊙ M_t
Inference for task j: W ⊙ (M_1 ∪ ... ∪ M_j) with head j. The item embedding, input projection,
LayerNorms and conv biases are trained only in T1's first phase and frozen afterwards, so past
tasks' outputs stay bit-identical (BWT = 0). Entries of F are also restored after every step, so no
optimiser quirk can move them. Same heads and softmax CE as the other strategies (the common protocol of
docs/algorithms.md#baselines), not the BPR losses of CONURE's official code.
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

    def __init__(self, config):
        super().__init__(config)
        self.p = config.conure.prune
        self._frozen: list[torch.Tensor] | None = None
        self._saved: list[torch.Tensor] | None = None

    def phases(self, task: TaskData) -> int:
        return 2  # train, prune, retrain

    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        model = ctx.model
        position = model.task_index(task.name)
        weights = model.conv_weights()
        frozen = model.weight_masks.union(model.task_names[:position], weights)
        train_shared = position == 0 and ctx.phase == 0
        for module in model.shared_modules():
            for p in module.parameters():
                p.requires_grad_(train_shared)
        for conv in model.conv_layers():
            conv.bias.requires_grad_(train_shared)
        self._frozen = frozen
        self._saved = [w.detach().clone() for w in weights]
        if ctx.phase == 1:  # retrain: the task's own mask
            own = model.weight_masks.mask(task.name)
            trainable = [own[i] for i in range(len(weights))]
        else:  # train: every free entry
            trainable = [~f for f in frozen]
        model.weight_masks.begin_training(task.name, frozen, trainable)

    def after_step(self, ctx: TrainContext) -> None:
        with torch.no_grad():
            for w, frozen, saved in zip(ctx.model.conv_weights(), self._frozen, self._saved, strict=True):
                w.copy_(torch.where(frozen, saved, w))

    def after_task(self, ctx: TrainContext, task: TaskData) -> None:
        model = ctx.model
        if ctx.phase == 0:
            position = model.task_index(task.name)
            fraction = (self.p**position) * (1.0 - self.p)  # c_t of the whole tensor
            own = model.weight_masks.mask(task.name)
            with torch.no_grad():
                for i, w in enumerate(model.conv_weights()):
                    own[i] = prune_mask(w, self._frozen[i], int(math.floor(fraction * w.numel())))
        else:
            model.weight_masks.end_training()
