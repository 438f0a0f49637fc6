"""CONURE's per-task binary masks over the conv weights (Yuan et al. 2021; docs/algorithms.md, CONURE).

One bool buffer per task, ``<task>`` of shape [2K, C, C, k] (the 2K conv weights stacked in forward
order), so the state-dict keys are ``weight_masks.<task>``. Task t runs with W ⊙ (M_1 ∪ ... ∪ M_t).

While a task trains, :meth:`ConvWeightMasks.begin_training` declares which entries are frozen (the
union F of the past tasks' masks) and which are trainable (phase 1: the free entries 1 - F; phase 2:
the task's own mask M_t); the task then runs with W_eff = stopgrad(W ⊙ F) + W ⊙ trainable, past
tasks keep their inference weights. :meth:`end_training` returns to inference.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvWeightMasks(nn.Module):
    """Per-task bool masks [2K, C, C, k] over the conv weights, grown with :meth:`add_task`."""

    def __init__(self) -> None:
        super().__init__()
        self._training: tuple[str, list[torch.Tensor], list[torch.Tensor]] | None = None

    def add_task(self, name: str, weights: list[torch.Tensor]) -> None:
        """Register task ``name``'s empty mask shaped like the stacked ``weights``."""
        shape = (len(weights), *weights[0].shape)  # [2K, C, C, k]
        self.register_buffer(name, torch.zeros(shape, dtype=torch.bool, device=weights[0].device))

    def mask(self, name: str) -> torch.Tensor:
        """Task ``name``'s own mask M_t [2K, C, C, k] (a buffer: write into it in place)."""
        return getattr(self, name)

    def union(self, names: list[str], weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """M_1 ∪ ... over ``names`` as one bool tensor per conv weight (all False without names)."""
        if not names:
            return [torch.zeros_like(w, dtype=torch.bool) for w in weights]
        union = torch.stack([self.mask(n) for n in names]).any(dim=0)  # [2K, C, C, k]
        return [union[i] for i in range(len(weights))]

    def begin_training(self, task: str, frozen: list[torch.Tensor], trainable: list[torch.Tensor]) -> None:
        """From now on ``task`` runs with stopgrad(W ⊙ frozen) + W ⊙ trainable (per conv weight)."""
        self._training = (task, frozen, trainable)

    def end_training(self) -> None:
        self._training = None

    def effective(self, task: str, held: list[str], weights: list[torch.Tensor]) -> list[torch.Tensor]:
        """Conv weights ``task`` runs with; ``held`` = the model's tasks in order."""
        if self._training is not None and self._training[0] == task:
            _, frozen, trainable = self._training
            return [(w * f).detach() + w * t for w, f, t in zip(weights, frozen, trainable, strict=True)]
        names = held[: held.index(task) + 1]
        union = torch.stack([self.mask(n) for n in names]).any(dim=0)  # [2K, C, C, k]
        return [w * union[i] for i, w in enumerate(weights)]
