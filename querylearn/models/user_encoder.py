"""UserEncoder = input embedding (+ projection) + NextItNet + task masks + per-task heads.

``forward(ids, task, s=...)`` returns an :class:`EncoderOutput`; the user representation is the
last position's output (ALGORITHMS.md 3.2; sequences are left-padded, most recent last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from querylearn.models.heads import TaskHeads
from querylearn.models.masking import TaskMaskBank
from querylearn.models.nextitnet import ModelConfig, NextItNet

MASKINGS = ("relation", "plain", "none", "conure")


@dataclass
class EncoderOutput:
    """hidden: [B, C] (last position) or [B, L, C] (all positions); logits: [B, n] or [B, L, n];
    masks: the task's masks [M, C] (None without masking)."""

    hidden: torch.Tensor
    logits: torch.Tensor | None
    masks: torch.Tensor | None


class UserEncoder(nn.Module):
    """ids [B, L] -> user representation [B, C] and per-task logits.

    masking: "relation" (TERACON: plain masks while one task is held, relation-aware once there are
    two or more, everywhere, fixing B3), "plain" (σ(s e) always; HAT and the plain-mask ablation),
    "none" (no gates; finetune, single, multitask), "conure" (no gates; per-task binary masks
    over the conv weights, section 6.6: task t runs with W ⊙ (M_1 ∪ ... ∪ M_t)).
    """

    def __init__(
        self,
        vocab_size: int,
        config: ModelConfig,
        *,
        masking: str = "relation",
        embedding_dim: int | None = None,
        init_vectors: np.ndarray | None = None,
    ):
        super().__init__()
        if masking not in MASKINGS:
            raise ValueError(f"masking {masking!r} is not one of {MASKINGS}")
        self.config = config
        self.masking = masking
        if init_vectors is not None:
            if init_vectors.ndim != 2 or init_vectors.shape[0] != vocab_size:
                raise ValueError(f"init_vectors must be [{vocab_size}, D], got {tuple(init_vectors.shape)}")
            embedding_dim = int(init_vectors.shape[1])
        self.embedding_dim = int(embedding_dim or config.channels)
        self.item_embedding = nn.Embedding(vocab_size, self.embedding_dim)  # no padding_idx (section 3.1)
        if init_vectors is not None:
            with torch.no_grad():
                self.item_embedding.weight.copy_(torch.as_tensor(np.asarray(init_vectors, dtype=np.float32)))
        else:
            bound = math.sqrt(1.0 / vocab_size)  # section 3.3: U(-sqrt(1/|V|), +sqrt(1/|V|))
            nn.init.uniform_(self.item_embedding.weight, -bound, bound)
        # a learnt projection when the table width differs from the model width
        self.input_proj = (
            nn.Linear(self.embedding_dim, config.channels) if self.embedding_dim != config.channels else None
        )
        self.backbone = NextItNet(config)
        self.masks = TaskMaskBank(
            config.n_masked_layers,
            config.channels,
            emb_low=config.task_emb_low,
            emb_high=config.task_emb_high,
            relation_layers=config.relation_layers,
        )
        self.heads = TaskHeads(config.channels)
        # CONURE: one bool mask per task over the 2K conv weights (buffers "weight_masks.<task>")
        self.weight_masks = nn.Module()
        # runtime hook set by a training strategy: task -> conv weights to use (not saved)
        self.weight_override = None

    # ---- growth -------------------------------------------------------------------------------
    @property
    def task_names(self) -> list[str]:
        return self.heads.names

    @property
    def n_tasks(self) -> int:
        return len(self.heads.names)

    def add_task(self, name: str, n_classes: int) -> None:
        """Grow by one task: a head and (with masking) one task embedding; relation layers per config."""
        device = self.item_embedding.weight.device
        self.heads.add_task(name, n_classes)
        self.heads.heads[name].to(device)
        self.masks.add_task()
        self.masks.to(device)
        if self.masking == "conure":
            shape = (
                len(self.backbone.conv_weights()),
                *self.backbone.conv_weights()[0].shape,
            )  # [2K, C, C, k]
            self.weight_masks.register_buffer(name, torch.zeros(shape, dtype=torch.bool, device=device))

    def conure_weights(self, task: str) -> list[torch.Tensor]:
        """Conv weights task ``task`` runs with: the strategy's override while it trains, else
        W ⊙ (M_1 ∪ ... ∪ M_t) over the tasks up to ``task`` (section 6.6, inference)."""
        if self.weight_override is not None:
            return self.weight_override(task)
        names = self.task_names[: self.task_index(task) + 1]
        union = torch.stack([getattr(self.weight_masks, n) for n in names]).any(dim=0)  # [2K, C, C, k]
        return [w * union[i] for i, w in enumerate(self.backbone.conv_weights())]

    def task_index(self, name: str) -> int:
        try:
            return self.task_names.index(name)
        except ValueError:
            raise KeyError(
                f"task '{name}' is not held by this model (held: {', '.join(self.task_names)})"
            ) from None

    # ---- masks --------------------------------------------------------------------------------
    def all_masks(self, s: float) -> torch.Tensor | None:
        """Masks of every held task [N, M, C], or None when masking is "none"."""
        if self.masking in ("none", "conure"):
            return None
        return self.masks.masks(s, "plain" if self.masking == "plain" else "relation")

    def task_masks(self, task: str, s: float) -> torch.Tensor | None:
        """Masks of one task [M, C] (computed with all tasks, since relation masks depend on them)."""
        masks = self.all_masks(s)
        return None if masks is None else masks[self.task_index(task)]

    # ---- forward ------------------------------------------------------------------------------
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.item_embedding(ids)  # [B, L, E]
        if self.input_proj is not None:
            x = self.input_proj(x)  # [B, L, C]
        return x

    def encode(
        self,
        ids: torch.Tensor,
        masks: torch.Tensor | None = None,
        *,
        all_positions: bool = False,
        conv_weights: list[torch.Tensor] | None = None,
        task: str | None = None,
    ) -> torch.Tensor:
        """ids [B, L], masks [M, C] | [B, M, C] | None -> [B, C] (last position) or [B, L, C].

        ``task`` selects CONURE's weight masks (required with masking "conure")."""
        if self.masking == "conure" and conv_weights is None:
            if task is None:
                raise ValueError("masking 'conure' needs the task to choose its weight masks")
            conv_weights = self.conure_weights(task)
        return self.backbone(
            self.embed(ids), masks, conv_weights, last_only=not all_positions
        )  # [B, L, C] | [B, C]

    def forward(
        self,
        ids: torch.Tensor,
        task: str,
        *,
        s: float,
        all_positions: bool = False,
        candidates: torch.Tensor | None = None,
        conv_weights: list[torch.Tensor] | None = None,
    ) -> EncoderOutput:
        """Encode with ``task``'s mask at scale ``s`` and apply its head (``candidates``: class subset)."""
        masks = self.task_masks(task, s)
        hidden = self.encode(ids, masks, all_positions=all_positions, conv_weights=conv_weights, task=task)
        logits = self.heads(hidden, task, candidates)
        return EncoderOutput(hidden=hidden, logits=logits, masks=masks)

    @torch.no_grad()
    def clamp_task_embeddings_(self, bound: float) -> None:
        if self.masking in ("relation", "plain"):
            self.masks.clamp_(bound)
