"""NextItNet backbone (WSDM 2019; docs/algorithms.md#backbone): causal dilated residual blocks, no task logic.

Shapes: ``B`` batch, ``L`` sequence length, ``C`` channels (model width), ``K`` blocks.
The backbone maps input vectors ``[B, L, C]`` to hidden states ``[B, L, C]``; per-channel gates
(task masks, #gating) are passed in explicitly, one pair per block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from querylearn.config_loader import require


@dataclass
class ModelConfig:
    """Backbone and input-embedding hyper-parameters (defaults: #defaults).

    channels: model width C. dilations: base dilation d_k per block; block k convolves with d_k
    then 2 d_k (#backbone). kernel_size: conv taps. ln_eps: LayerNorm epsilon (1e-8 as in the
    official code). task_emb_low/high: U(low, high) init of new task embeddings (#task-masks).
    relation_layers: "reinit" re-creates every relation layer when a task is added (parity, B20,
    docs/algorithms.md#b20) or "grow" keeps the learnt weights and adds zero-initialised inputs for
    the new task.
    padding: "parity" (the official code: padding ids are embedded and convolved like queries, so
    a sequence's outputs depend on how much left padding it has) or "exact" (activations of padded
    positions are zero after the embedding, after each gated conv1 and after each block, so the
    causal convolutions see exactly the zeros they would see before the start: outputs at real
    positions do not depend on the padding, and a batch's common all-padding prefix is dropped
    before the backbone; docs/algorithms.md#padding).
    """

    channels: int = 256
    dilations: tuple[int, ...] = (1, 4, 1, 4, 1, 4, 1, 4)
    kernel_size: int = 3
    ln_eps: float = 1e-8
    task_emb_low: float = 0.0
    task_emb_high: float = 2.0
    relation_layers: str = "reinit"
    padding: str = "parity"

    def __post_init__(self) -> None:
        require(self.channels >= 1, "channels", "must be >= 1", self.channels)
        require(self.kernel_size >= 1, "kernel_size", "must be >= 1", self.kernel_size)
        require(bool(self.dilations) and min(self.dilations) >= 1, "dilations",
                "must be non-empty, each >= 1", self.dilations)
        require(self.relation_layers in ("reinit", "grow"), "relation_layers", "must be 'reinit' or 'grow'",
                self.relation_layers)
        require(self.padding in ("parity", "exact"), "padding", "must be 'parity' or 'exact'", self.padding)

    @property
    def n_blocks(self) -> int:
        return len(self.dilations)

    @property
    def n_masked_layers(self) -> int:
        """Two gated activations per block (after conv1 and after conv2)."""
        return 2 * len(self.dilations)

    def receptive_field(self) -> int:
        """Positions that can influence one output: 1 + (k-1) * sum of all conv dilations."""
        return 1 + (self.kernel_size - 1) * sum(3 * d for d in self.dilations)


class CausalConv1d(nn.Module):
    """Causal dilated convolution: left zero-pad the time axis by (k-1)·δ, then a valid conv.

    Output at t = b + Σ_i W_i · h_{t-(k-1-i)δ} (terms before the start are zero), #backbone.
    Input and output are time-major ``[B, L, C]``. The conv runs as a (1, k) conv2d on a
    channels-last view of that layout (as the official code's kernel-(1, 3) conv), so no transposes
    are copied. The weight is stored as nn.Conv1d's ``[C_out, C_in, k]``.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, L, C] -> [B, L, C]. ``weight`` [C, C, k] replaces the conv weight (CONURE)."""
        batch, length, channels = x.shape
        x = F.pad(x, (0, 0, self.left_pad, 0))  # [B, L + (k-1)δ, C]
        x = x.unsqueeze(1).permute(0, 3, 1, 2)  # [B, C, 1, L'] with channels-last strides (a view)
        w = (self.conv.weight if weight is None else weight).unsqueeze(2)  # [C, C, 1, k]
        w = w.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, w, self.conv.bias, dilation=(1, self.dilation))  # [B, C, 1, L]
        return y.permute(0, 2, 3, 1).reshape(batch, length, -1)  # [B, L, C]


class ResidualBlock(nn.Module):
    """Post-LN NextItNet residual block with two channel gates (#backbone):

    A = ReLU(LN_1(conv_d(H))) ⊙ m_1;  O = ReLU(LN_2(conv_2d(A))) ⊙ m_2;  H' = H + O.

    ``keep`` (padding "exact"): 1 at real positions, 0 at padding; A and H' are multiplied by it,
    so conv_2d and the next block read zeros at padded positions, as before the sequence start.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, ln_eps: float):
        super().__init__()
        self.conv1 = CausalConv1d(channels, kernel_size, dilation)
        self.ln1 = nn.LayerNorm(channels, eps=ln_eps)
        self.conv2 = CausalConv1d(channels, kernel_size, 2 * dilation)
        self.ln2 = nn.LayerNorm(channels, eps=ln_eps)

    def forward(
        self,
        h: torch.Tensor,
        mask1: torch.Tensor | None = None,
        mask2: torch.Tensor | None = None,
        weights: tuple[torch.Tensor, torch.Tensor] | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """h [B, L, C]; masks [C] or [B, C] (broadcast over time); keep [B, L, 1] | None -> [B, L, C]."""
        w1, w2 = weights if weights is not None else (None, None)
        a = F.relu(self.ln1(self.conv1(h, w1)))  # [B, L, C]
        if mask1 is not None:
            a = a * mask1.unsqueeze(-2)  # [.., 1, C]
        if keep is not None:
            a = a * keep
        o = F.relu(self.ln2(self.conv2(a, w2)))
        if mask2 is not None:
            o = o * mask2.unsqueeze(-2)
        return h + o if keep is None else (h + o) * keep

    def forward_last(
        self,
        h: torch.Tensor,
        mask1: torch.Tensor | None = None,
        mask2: torch.Tensor | None = None,
        weights: tuple[torch.Tensor, torch.Tensor] | None = None,
        keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block's output at the last position only: h [B, L, C], keep [B, L, 1] | None -> [B, C].

        Equal to ``forward(h)[:, -1]`` but conv2 is evaluated at one position and conv1 only at the
        k positions conv2 reads (the readout needs nothing else), saving two full convolutions.
        """
        w1, w2 = weights if weights is not None else (self.conv1.conv.weight, self.conv2.conv.weight)
        k = w1.shape[-1]
        length = h.shape[1]
        taps = torch.arange(k - 1, -1, -1, device=h.device)  # tap i reads t - (k-1-i)·δ
        q = (length - 1) - taps * self.conv2.dilation  # [k] positions of A read by conv2
        p = q[:, None] - taps[None, :] * self.conv1.dilation  # [k, k] positions of H read by conv1
        hp = h[:, p.clamp(min=0)] * (p >= 0)[None, :, :, None].to(h.dtype)  # [B, k, k, C] (zero padding)
        a = torch.einsum("bqjc,ocj->bqo", hp, w1.to(hp.dtype)) + self.conv1.conv.bias  # [B, k, C]
        a = F.relu(self.ln1(a))
        if mask1 is not None:
            a = a * mask1.unsqueeze(-2)
        a = a * (q >= 0)[None, :, None].to(a.dtype)  # conv2's zero padding before the start
        if keep is not None:
            a = a * keep[:, q.clamp(min=0)]  # [B, k, 1]: zero at padded positions
        o = torch.einsum("bqc,ocq->bo", a, w2.to(a.dtype)) + self.conv2.conv.bias  # [B, C]
        o = F.relu(self.ln2(o))
        if mask2 is not None:
            o = o * mask2
        return h[:, -1] + o if keep is None else (h[:, -1] + o) * keep[:, -1]


class NextItNet(nn.Module):
    """Stack of residual blocks. forward(x [B, L, C], masks [2K, C] | [B, 2K, C] | None) -> [B, L, C]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.blocks = nn.ModuleList(
            ResidualBlock(config.channels, config.kernel_size, d, config.ln_eps) for d in config.dilations
        )

    def conv_weights(self) -> list[torch.Tensor]:
        """The 2K conv weight tensors in forward order (conv1, conv2 of block 0, ...)."""
        return [w for b in self.blocks for w in (b.conv1.conv.weight, b.conv2.conv.weight)]

    def forward(
        self,
        x: torch.Tensor,
        masks: torch.Tensor | None = None,
        conv_weights: list[torch.Tensor] | None = None,
        *,
        last_only: bool = False,
        keep: torch.Tensor | None = None,
        checkpoint_blocks: bool = False,
    ) -> torch.Tensor:
        """x [B, L, C]; masks [2K, C] or [B, 2K, C] (row 2k gates conv1 of block k, 2k+1 conv2).

        checkpoint_blocks: keep only each block's input for backward and recompute the block there
        (the same values and gradients; peak memory of one block instead of all of them).
        keep [B, L, 1] (padding "exact"): 1 at real positions, 0 at padding; padded positions'
        activations are zeroed (the input, every A and every block output), so the outputs at real
        positions equal those of the same sequence without its padding.
        Returns [B, L, C], or [B, C] (the last position only, computed more cheaply) with ``last_only``.
        """
        h = x if keep is None else x * keep  # [B, L, C]
        n_blocks = len(self.blocks)
        for k, block in enumerate(self.blocks):
            m1 = m2 = None
            if masks is not None:
                m1, m2 = masks[..., 2 * k, :], masks[..., 2 * k + 1, :]  # [C] or [B, C]
            w = None if conv_weights is None else (conv_weights[2 * k], conv_weights[2 * k + 1])
            if last_only and k == n_blocks - 1:
                return block.forward_last(h, m1, m2, w, keep)  # [B, C]
            if checkpoint_blocks and torch.is_grad_enabled():
                h = torch.utils.checkpoint.checkpoint(block, h, m1, m2, w, keep, use_reentrant=False)
            else:
                h = block(h, m1, m2, w, keep)
        return h  # [B, L, C]
