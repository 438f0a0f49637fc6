"""UserEncoder = input embedding (+ projection) + NextItNet + task masks + per-task heads.

``forward(ids, task, s=...)`` returns an :class:`EncoderOutput`; the user representation is the
last position's output (docs/algorithms.md#readout; sequences are left-padded, most recent last).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from querylearn.data.vocab import PAD_ID
from querylearn.models.heads import QUERY_HEADS, TaskHeads
from querylearn.models.masking import DEFAULT_SMAX, TaskMaskBank
from querylearn.models.nextitnet import ModelConfig, NextItNet
from querylearn.models.weight_masks import ConvWeightMasks

MASKINGS = ("relation", "plain", "none", "conure")


def padding_prefix(ids: torch.Tensor) -> int:
    """Number of leading positions that are padding in every row of ids [B, L] (0..L)."""
    real = (ids != PAD_ID).any(dim=0)  # [L]
    return int(real.int().argmax()) if bool(real.any()) else ids.shape[-1]


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
    two or more, everywhere, fixing B3, docs/algorithms.md#b3), "plain" (σ(s e) always; HAT and the
    plain-mask ablation),
    "none" (no gates; finetune, single, multitask), "conure" (no gates; per-task binary masks
    over the conv weights, docs/algorithms.md#conure: task t runs with W ⊙ (M_1 ∪ ... ∪ M_t)).

    smax: the mask scale of evaluation (and the end of the training anneal,
    docs/algorithms.md#s-annealing); it travels with the model (checkpoints store it), so readers
    of a trained model never need the train config.

    next_query_task / next_query_head: the task whose head is ``next_query_head`` ("softmax", the
    paper's linear head; "tied", "copy", "tied-copy": :mod:`querylearn.models.heads`); every other
    head is linear. Checkpoints store both.
    """

    def __init__(
        self,
        vocab_size: int,
        config: ModelConfig,
        *,
        masking: str = "relation",
        embedding_dim: int | None = None,
        init_vectors: np.ndarray | None = None,
        smax: float = DEFAULT_SMAX,
        next_query_task: str | None = None,
        next_query_head: str = "softmax",
    ):
        super().__init__()
        if next_query_head not in QUERY_HEADS:
            raise ValueError(f"next_query head {next_query_head!r} is not one of {QUERY_HEADS}")
        self.next_query_task = next_query_task
        self.next_query_head = next_query_head
        if masking not in MASKINGS:
            raise ValueError(f"masking {masking!r} is not one of {MASKINGS}")
        if smax <= 0:
            raise ValueError(f"smax must be > 0, got {smax}")
        self.config = config
        self.masking = masking
        self.smax = float(smax)
        if init_vectors is not None:
            if init_vectors.ndim != 2 or init_vectors.shape[0] != vocab_size:
                raise ValueError(f"init_vectors must be [{vocab_size}, D], got {tuple(init_vectors.shape)}")
            embedding_dim = int(init_vectors.shape[1])
        self.embedding_dim = int(embedding_dim or config.channels)
        # no padding_idx (docs/algorithms.md#backbone)
        self.item_embedding = nn.Embedding(vocab_size, self.embedding_dim)
        if init_vectors is not None:
            with torch.no_grad():
                self.item_embedding.weight.copy_(torch.as_tensor(np.asarray(init_vectors, dtype=np.float32)))
        else:
            # docs/algorithms.md#initialisation: U(-sqrt(1/|V|), +sqrt(1/|V|))
            bound = math.sqrt(1.0 / vocab_size)
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
        self.weight_masks = ConvWeightMasks()

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
        kind = self.next_query_head if name == self.next_query_task else "softmax"
        if kind != "softmax" and n_classes != self.item_embedding.num_embeddings:
            raise ValueError(
                f"task '{name}': a '{kind}' head ranks the input queries, so it needs "
                f"{self.item_embedding.num_embeddings} classes, got {n_classes}"
            )
        self.heads.add_task(name, n_classes, kind)
        self.heads.heads[name].to(device)
        self.masks.add_task()
        self.masks.to(device)
        if self.masking == "conure":
            self.weight_masks.add_task(name, self.conv_weights())

    def conure_weights(self, task: str) -> list[torch.Tensor]:
        """Conv weights task ``task`` runs with (:class:`ConvWeightMasks`): W ⊙ (M_1 ∪ ... ∪ M_t) at
        inference, stopgrad(W ⊙ F) + W ⊙ trainable while the task trains (docs/algorithms.md#conure)."""
        self.task_index(task)  # a clear error for a task the model does not hold
        return self.weight_masks.effective(task, self.task_names, self.conv_weights())

    def task_index(self, name: str) -> int:
        try:
            return self.task_names.index(name)
        except ValueError:
            raise KeyError(
                f"task '{name}' is not held by this model (held: {', '.join(self.task_names)})"
            ) from None

    # ---- parts that strategies act on -----------------------------------------------------------
    def shared_modules(self) -> list[nn.Module]:
        """Modules every task shares and no task owns: the item embedding, the input projection (if
        any) and the LayerNorms of every block (frozen after T1 by HAT and CONURE)."""
        shared: list[nn.Module] = [self.item_embedding]
        if self.input_proj is not None:
            shared.append(self.input_proj)
        return shared + [m for b in self.backbone.blocks for m in (b.ln1, b.ln2)]

    def conv_layers(self) -> list[nn.Conv1d]:
        """The 2K conv layers in forward order (conv1, conv2 of block 0, ...); layer i is gated by
        mask row i."""
        return [c.conv for b in self.backbone.blocks for c in (b.conv1, b.conv2)]

    def conv_weights(self) -> list[torch.Tensor]:
        """The 2K conv weights [C, C, k] in forward order."""
        return [conv.weight for conv in self.conv_layers()]

    # ---- masks --------------------------------------------------------------------------------
    @property
    def has_task_masks(self) -> bool:
        """Whether tasks have channel masks (masking "relation" or "plain")."""
        return self.masking in ("relation", "plain")

    def all_masks(self, s: float) -> torch.Tensor | None:
        """Masks of every held task [N, M, C], or None when masking is "none"."""
        if not self.has_task_masks:
            return None
        return self.masks.masks(s, "plain" if self.masking == "plain" else "relation")

    def task_masks(self, task: str, s: float) -> torch.Tensor | None:
        """Masks of one task [M, C] (computed with all tasks, since relation masks depend on them)."""
        masks = self.all_masks(s)
        return None if masks is None else masks[self.task_index(task)]

    # ---- forward ------------------------------------------------------------------------------
    def item_vectors(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """Query vectors in the model's width: ``embed(ids)`` [..., C]; ids None -> all queries [V, C]
        (the embedding weight itself when there is no projection: tied heads share its storage)."""
        if ids is not None:
            return self.embed(ids)
        w = self.item_embedding.weight  # [V, E]
        return w if self.input_proj is None else self.input_proj(w)

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
        checkpoint_blocks: bool = False,
    ) -> torch.Tensor:
        """ids [B, L], masks [M, C] | [B, M, C] | None -> [B, C] (last position) or [B, L, C].

        ``task`` selects CONURE's weight masks (required with masking "conure").
        ``checkpoint_blocks``: recompute each block in backward instead of keeping its activations
        (same values and gradients, less memory; :class:`NextItNet`).
        With ``config.padding == "exact"`` padded positions are zeroed and the batch's common
        all-padding prefix is not computed (its outputs are zero: all positions come back re-padded
        with zeros), docs/algorithms.md#padding."""
        if self.masking == "conure" and conv_weights is None:
            if task is None:
                raise ValueError("masking 'conure' needs the task to choose its weight masks")
            conv_weights = self.conure_weights(task)
        if self.config.padding != "exact":
            return self.backbone(
                self.embed(ids), masks, conv_weights, last_only=not all_positions,
                checkpoint_blocks=checkpoint_blocks,
            )  # [B, L, C] | [B, C]
        start = min(padding_prefix(ids), ids.shape[-1] - 1)  # keep at least one position
        ids = ids[:, start:]  # [B, L - start]
        x = self.embed(ids)
        keep = (ids != PAD_ID).unsqueeze(-1).to(x.dtype)  # [B, L - start, 1]
        h = self.backbone(
            x, masks, conv_weights, last_only=not all_positions, keep=keep,
            checkpoint_blocks=checkpoint_blocks,
        )
        return F.pad(h, (0, 0, start, 0)) if all_positions and start else h  # [B, L, C] | [B, C]

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
        logits = self.head_logits(hidden, task, candidates, ids=ids)
        return EncoderOutput(hidden=hidden, logits=logits, masks=masks)

    def head_logits(
        self,
        hidden: torch.Tensor,
        task: str,
        candidates: torch.Tensor | None = None,
        *,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``task``'s head on hidden [B, C] (last position) or [B, L, C] -> [B(, L), n | S].

        ``ids`` [B, L]: the input query ids that ``hidden`` was encoded from (copy heads read them;
        the other heads ignore them)."""
        return self.heads(hidden, task, candidates, ids=ids, item_vectors=self.item_vectors)

    @torch.no_grad()
    def clamp_task_embeddings_(self, bound: float) -> None:
        if self.has_task_masks:
            self.masks.clamp_(bound)
