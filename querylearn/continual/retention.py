"""Pure maths of TERACON's knowledge retention (docs/algorithms.md#retention, TERACON Eq. 9-10, 14-16, 18).

No module state: the strategy (strategies/teracon.py) connects these to the training hooks.
Shapes: ``P`` past tasks, ``M`` masked layers, ``C`` channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def rho_from_masks(
    teacher_masks: torch.Tensor, new_masks: torch.Tensor, sharpness: float = 6.0, eps: float = 1e-6
) -> torch.Tensor:
    """Relation-aware sampling rates for all past tasks in one op (TERACON Eq. 14-15, #sampling-ratio).

    teacher_masks [P, M, C] (past tasks, frozen teacher), new_masks [M, C] (new task, student)
    -> rho [P] = 1 - (1/M) Σ_l σ(sharpness · cos(m^j_l, m^new_l)). Detached.
    """
    new = new_masks.detach().unsqueeze(0).expand_as(teacher_masks)  # [P, M, C]
    cos = F.cosine_similarity(teacher_masks.detach(), new, dim=-1, eps=eps)  # [P, M]
    return 1.0 - torch.sigmoid(sharpness * cos).mean(dim=-1)  # [P]


def rho_bounds(sharpness: float = 6.0) -> tuple[float, float]:
    """[low, high) of rho for positive masks: cos ∈ (0, 1] gives rho ∈ [1 - σ(k), 0.5)."""
    return 1.0 - 1.0 / (1.0 + math.exp(-sharpness)), 0.5


def sample_sizes(rho: list[float], n_rows: int, min_samples: int = 1) -> list[int]:
    """Retained subset size per past task: max(min_samples, floor(n_rows · rho_j)), at most n_rows.

    The floor of ``min_samples`` (>= 1) fixes B5 (docs/algorithms.md#b5: an empty subset gives a NaN MSE).
    """
    return [min(n_rows, max(min_samples, int(math.floor(n_rows * r)))) for r in rho]


def retention_weights(rho: torch.Tensor) -> torch.Tensor:
    """w_j = rho_j / Σ_k rho_k (#retention): rho [P] -> [P]."""
    return rho / rho.sum()


def retention_loss(
    student_logits: list[torch.Tensor], teacher_logits: list[torch.Tensor], weights: torch.Tensor
) -> torch.Tensor:
    """L_KR = Σ_j w_j · MSE(ŷ'_j, ŷ_j), MSE the mean over all |S_j| x C_j logits (TERACON Eq. 16)."""
    per_task = torch.stack(
        [F.mse_loss(s, t) for s, t in zip(student_logits, teacher_logits, strict=True)]
    )  # [P]
    return (weights.to(per_task.dtype) * per_task).sum()
