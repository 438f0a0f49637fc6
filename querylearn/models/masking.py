"""Task masks: per-task embeddings -> per-layer channel gates (docs/algorithms.md#task-masks).

Shapes: ``N`` tasks held, ``M = 2K`` masked layers (two per block), ``C`` channels.

- plain (HAT-style, docs/algorithms.md#plain-masks):  m^t = σ(s · e^t)
- relation-aware (docs/algorithms.md#relation-aware-masks, TERACON Eq. 12-13): for task t and layer l, stack
  Q = [e^t; e^j, -e^j for every j != t in increasing order]  ((2N-1) x C),
  z = w^t · tanh(s · Q) + b^t  (one linear map over the task axis, shared by the channels),
  m^t = σ(s · z).
All tasks' masks are computed in one tensor op (fixes B25, docs/algorithms.md#b25). The ± copies are
kept as separate parameters for parity (B21, docs/algorithms.md#b21); since tanh is odd they collapse
to one coefficient w^+ - w^-.
"""

from __future__ import annotations

import torch
from torch import nn

MASK_MODES = ("relation", "plain")
DEFAULT_SMAX = 50.0  # the mask scale at evaluation and the end of the anneal (docs/algorithms.md#defaults)


def anneal_s(batch_index: int | float, batches_per_epoch: float, smax: float) -> float:
    """TERACON Eq. 19 (docs/algorithms.md#s-annealing): s_b = 1/smax + (smax - 1/smax) · b / R,
    restarting every epoch.

    ``batches_per_epoch`` is R = N_train / B as a float (not the number of yielded batches).
    """
    return 1.0 / smax + (smax - 1.0 / smax) * float(batch_index) / max(float(batches_per_epoch), 1e-12)


def plain_masks(task_emb: torch.Tensor, s: float) -> torch.Tensor:
    """σ(s · e): task_emb [N, M, C] -> masks [N, M, C] in (0, 1)."""
    return torch.sigmoid(s * task_emb)


def relation_index(
    n_tasks: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions in the (2N-1)-wide relation input of task t for task j.

    Returns (plus [N, N], minus [N, N], is_other [N, N] bool): for j == t plus = 0 (the task's own
    row) and minus is unused; for j != t with r = rank of j among the other tasks, plus = 1 + 2r and
    minus = 2 + 2r (the rows holding e^j and -e^j).
    """
    t = torch.arange(n_tasks, device=device)[:, None]  # [N, 1]
    j = torch.arange(n_tasks, device=device)[None, :]  # [1, N]
    rank = torch.where(j < t, j, j - 1)  # rank of j among tasks != t
    is_other = j != t
    plus = torch.where(is_other, 1 + 2 * rank, torch.zeros_like(rank))
    minus = torch.where(is_other, 2 + 2 * rank, torch.zeros_like(rank))
    return plus, minus, is_other


def relation_coefficients(rel_weight: torch.Tensor) -> torch.Tensor:
    """Effective coefficient of tanh(s e^j) in task t's pre-activation.

    rel_weight [N, M, 2N-1] -> A [N(t), M, N(j)] with A[t, l, t] = w_0 and
    A[t, l, j] = w^+_j - w^-_j (tanh is odd, so the -e^j copy contributes -w^-_j tanh(s e^j)).
    """
    n = rel_weight.shape[0]
    plus, minus, is_other = relation_index(n, rel_weight.device)
    idx_plus = plus[:, None, :].expand(n, rel_weight.shape[1], n)  # [N, M, N]
    idx_minus = minus[:, None, :].expand(n, rel_weight.shape[1], n)
    w_plus = torch.gather(rel_weight, 2, idx_plus)
    w_minus = torch.gather(rel_weight, 2, idx_minus) * is_other[:, None, :].to(rel_weight.dtype)
    return w_plus - w_minus


def relation_masks(
    task_emb: torch.Tensor, rel_weight: torch.Tensor, rel_bias: torch.Tensor, s: float
) -> torch.Tensor:
    """Relation-aware masks of all tasks at once (docs/algorithms.md#relation-aware-masks).

    task_emb [N, M, C], rel_weight [N, M, 2N-1], rel_bias [N, M] -> masks [N, M, C].
    """
    z_all = torch.tanh(s * task_emb)  # [N, M, C]   Z = tanh(s·Q) rows
    coef = relation_coefficients(rel_weight)  # [N, M, N]
    z = torch.einsum("tlj,jlc->tlc", coef, z_all) + rel_bias[..., None]  # [N, M, C]
    return torch.sigmoid(s * z)


class TaskMaskBank(nn.Module):
    """Per-task embeddings [N, M, C] and relation layers [N, M, 2N-1] + bias [N, M].

    Grows with ``add_task()``; the task count is part of the parameter shapes, so a checkpoint is
    loaded by adding the same number of tasks first and then ``load_state_dict(strict=True)``.
    """

    def __init__(
        self,
        n_layers: int,
        channels: int,
        *,
        emb_low: float = 0.0,
        emb_high: float = 2.0,
        relation_layers: str = "reinit",
    ):
        super().__init__()
        self.n_layers = n_layers
        self.channels = channels
        self.emb_low, self.emb_high = emb_low, emb_high
        self.relation_layers = relation_layers
        self.task_embedding = nn.Parameter(torch.empty(0, n_layers, channels))  # [N, M, C]
        self.rel_weight = nn.Parameter(torch.empty(0, n_layers, 1))  # [N, M, 2N-1]
        self.rel_bias = nn.Parameter(torch.empty(0, n_layers))  # [N, M]

    @property
    def n_tasks(self) -> int:
        return int(self.task_embedding.shape[0])

    def add_task(self) -> None:
        """Append one task: e ~ U(low, high); relation layers re-created (B20 parity,
        docs/algorithms.md#b20) or grown."""
        dev, dtype = self.task_embedding.device, self.task_embedding.dtype
        n = self.n_tasks + 1
        new_emb = torch.empty(1, self.n_layers, self.channels, device=dev, dtype=dtype)
        nn.init.uniform_(new_emb, self.emb_low, self.emb_high)
        fresh_w = torch.empty(n, self.n_layers, 2 * n - 1, device=dev, dtype=dtype)
        # docs/algorithms.md#initialisation: relation MLP weights N(0, 0.01^2)
        nn.init.normal_(fresh_w, 0.0, 0.01)
        fresh_b = torch.full((n, self.n_layers), 0.1, device=dev, dtype=dtype)  # bias 0.1
        if self.relation_layers == "grow" and n > 1:
            # old task t's inputs keep their positions; the new task's ± pair is appended (zero init)
            old_w = self.rel_weight.detach()
            fresh_w[: n - 1] = 0.0
            fresh_w[: n - 1, :, : 2 * n - 3] = old_w
            fresh_b[: n - 1] = self.rel_bias.detach()
        with torch.no_grad():
            self.task_embedding = nn.Parameter(torch.cat([self.task_embedding.detach(), new_emb], 0))
        self.rel_weight = nn.Parameter(fresh_w)
        self.rel_bias = nn.Parameter(fresh_b)

    def masks(self, s: float, mode: str = "relation") -> torch.Tensor:
        """Masks of every task at scale ``s``: [N, M, C]. ``relation`` falls back to plain when N = 1
        (a single task has no relations; docs/algorithms.md#mask-use: T1 uses plain masks)."""
        if mode not in MASK_MODES:
            raise ValueError(f"mask mode {mode!r} is not one of {MASK_MODES}")
        if mode == "plain" or self.n_tasks == 1:
            return plain_masks(self.task_embedding, s)
        return relation_masks(self.task_embedding, self.rel_weight, self.rel_bias, s)

    @torch.no_grad()
    def clamp_(self, bound: float) -> None:
        """Clamp every task embedding to [-bound, bound] after an optimiser step
        (docs/algorithms.md#gating)."""
        self.task_embedding.clamp_(-bound, bound)

    def extra_repr(self) -> str:
        return f"n_tasks={self.n_tasks}, n_layers={self.n_layers}, channels={self.channels}"


def mask_sparsity(masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of channels switched off (mask < ``threshold``) per task and layer.

    masks [N, M, C] -> [N, M] in [0, 1].
    """
    return (masks < threshold).to(torch.float32).mean(dim=-1)


def mask_channel_std(masks: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each task's mask across channels (population std), per layer.

    masks [N, M, C] -> [N, M]; 0 when a mask is the same on every channel.
    """
    return masks.to(torch.float32).std(dim=-1, unbiased=False)


def mask_cosine(masks: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity of the tasks' concatenated masks (docs/algorithms.md#task-relations):
    [N, M, C] -> [N, N]."""
    flat = masks.reshape(masks.shape[0], -1).to(torch.float64)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(eps)
    return unit @ unit.T
