"""One linear classifier per task (ALGORITHMS.md 3.3): G_i(h) = W_i h + b_i, W_i ~ N(0, 0.01^2), b_i = 0.1."""

from __future__ import annotations

import torch
from torch import nn


class TaskHeads(nn.Module):
    """Heads in task order; ``add_task(name, n_classes)`` appends one. Keys ``heads.<name>.weight``."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.heads = nn.ModuleDict()

    @property
    def names(self) -> list[str]:
        return list(self.heads.keys())

    def add_task(self, name: str, n_classes: int) -> None:
        if name in self.heads:
            raise ValueError(f"head '{name}' exists already")
        if n_classes < 1:
            raise ValueError(f"head '{name}': n_classes must be >= 1, got {n_classes}")
        ref = next(self.parameters(), None)
        head = nn.Linear(self.channels, n_classes)
        nn.init.normal_(head.weight, 0.0, 0.01)
        nn.init.constant_(head.bias, 0.1)
        if ref is not None:
            head = head.to(device=ref.device, dtype=ref.dtype)
        self.heads[name] = head

    def n_classes(self, name: str) -> int:
        return int(self.heads[name].out_features)

    def forward(self, h: torch.Tensor, name: str, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """h [..., C] -> logits [..., n_classes]; with ``candidates`` [S] only those classes [..., S]."""
        head = self.heads[name]
        if candidates is None:
            return head(h)
        return torch.nn.functional.linear(h, head.weight[candidates], head.bias[candidates])
