"""Per-task output heads (ALGORITHMS.md 3.3) and the next-query head options.

Every task has a linear classifier G_i(h) = W_i h + b_i, W_i ~ N(0, 0.01^2), b_i = 0.1 (the paper's
"softmax" head). The next_query task (T1) may instead use a :class:`QueryHead`:

- ``tied``: W = the input query vectors ``E`` (after the learnt input projection when the
  embed-init table's width differs from the model's): logits = h · proj(E)^T + b, so pretrained
  vectors shape the output side as well, with one storage and one gradient;
- ``copy``: pointer-generator mixture of the softmax with a distribution over the user's own
  earlier queries (See et al. 2017):
      a_{t,k}  = softmax_k( (W_q h_t) · proj(E[x_k]) / sqrt(C) + r[min(t - k, R - 1)] )   k ≤ t, x_k ∉ {pad, unk}
      c_t(q)   = Σ_k a_{t,k} [x_k = q]                               (one scatter over the history ids)
      g_t      = σ(w_g · h_t + b_g)
      log p_t  = log( g_t softmax(W h_t + b) + (1 - g_t) c_t )       (log-sum-exp, never log 0)
  (``r``: a learnt recency bias per distance); positions with no valid history use the softmax alone;
- ``tied-copy``: both.

Heads with a copy component return log-probabilities (a softmax of them is the mixture itself, so
the cross-entropy and every ranking stay as they are); the others return logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from querylearn.data.vocab import PAD_ID, UNK_ID

QUERY_HEADS = ("softmax", "tied", "copy", "tied-copy")
COPY_DISTANCES = 64  # recency-bias buckets of the copy attention; longer distances share the last one

# item_vectors(ids) -> vectors [..., C] of query ids (all queries [V, C] for None)
ItemVectors = Callable[[torch.Tensor | None], torch.Tensor]


def copy_distribution(
    scores: torch.Tensor, history: torch.Tensor, query_pos: torch.Tensor, candidates: torch.Tensor | None,
    n_out: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over the history, scattered onto the output classes.

    scores [B, T, K] (attention logits), history [B, K] ids, query_pos [T] (position k of the last
    history item row t may see), candidates [S] sorted class ids or None (all ``n_out`` classes).
    -> (copy [B, T, n_out] probabilities over the classes, zero for rows without a valid history;
        has_history [B, T] bool). Padding and ``<unk>`` are never attended to.
    """
    B, K = history.shape
    valid = (history != PAD_ID) & (history != UNK_ID)  # [B, K]
    causal = torch.arange(K, device=history.device)[None, :] <= query_pos[:, None]  # [T, K]
    allowed = valid[:, None, :] & causal[None, :, :]  # [B, T, K]
    has_history = allowed.any(dim=-1)  # [B, T]
    attn = torch.softmax(scores.float().masked_fill(~allowed, float("-inf")), dim=-1)
    attn = torch.where(allowed, attn, torch.zeros((), device=attn.device))  # rows with no history: 0, not NaN
    if candidates is None:
        index = history
    else:  # keep only the history queries in the candidate list, at their positions in it
        pos = torch.searchsorted(candidates, history.contiguous()).clamp_max(len(candidates) - 1)  # [B, K]
        attn = attn * (candidates[pos] == history)[:, None, :]
        index = pos
    T = scores.shape[1]
    copy = torch.zeros(B, T, n_out, device=attn.device, dtype=attn.dtype)
    copy.scatter_add_(-1, index[:, None, :].expand(B, T, K), attn)  # [B, T, n_out]
    return copy, has_history


def mix_log_probs(gen_logits: torch.Tensor, gate_logit: torch.Tensor, copy: torch.Tensor,
                  has_history: torch.Tensor) -> torch.Tensor:
    """log(g softmax(z) + (1 - g) c) in log space; z [..., S], gate_logit [...], c [..., S],
    has_history [...] (False: log softmax(z) alone). Finite everywhere (c = 0 is clamped, not logged)."""
    log_gen = torch.log_softmax(gen_logits.float(), dim=-1)
    tiny = torch.finfo(torch.float32).tiny
    mixed = torch.logaddexp(
        F.logsigmoid(gate_logit.float())[..., None] + log_gen,
        F.logsigmoid(-gate_logit.float())[..., None] + torch.log(copy.clamp_min(tiny)),
    )
    return torch.where(has_history[..., None], mixed, log_gen)


class QueryHead(nn.Module):
    """The next_query head with tied output weights and/or a copy component (module docstring).

    forward(h [B, C] or [B, T, C], candidates [S] | None, ids [B, K], item_vectors) -> [B(, T), S].
    h [B, T, C] with T = K reads position t of ``ids`` (training); h [B, C] reads the last position.
    """

    def __init__(self, channels: int, n_classes: int, kind: str):
        super().__init__()
        if kind not in QUERY_HEADS or kind == "softmax":
            raise ValueError(f"QueryHead kind must be one of {QUERY_HEADS[1:]}, got {kind!r}")
        self.kind = kind
        self.channels = channels
        self.n_classes = n_classes
        self.tied = kind.startswith("tied")
        self.copy = kind.endswith("copy")
        if not self.tied:
            self.weight = nn.Parameter(torch.empty(n_classes, channels).normal_(0.0, 0.01))
        self.bias = nn.Parameter(torch.full((n_classes,), 0.1))
        if self.copy:
            self.copy_query = nn.Linear(channels, channels)
            self.gate = nn.Linear(channels, 1)
            self.recency = nn.Parameter(torch.zeros(COPY_DISTANCES))

    def output_weight(self, item_vectors: ItemVectors | None, candidates: torch.Tensor | None) -> torch.Tensor:
        """The output matrix [S, C] (the tied query vectors, or this head's own weight)."""
        if not self.tied:
            return self.weight if candidates is None else self.weight[candidates]
        if item_vectors is None:
            raise ValueError(f"a '{self.kind}' head needs the encoder's query vectors (UserEncoder.head_logits)")
        return item_vectors(candidates)

    def forward(self, h: torch.Tensor, candidates: torch.Tensor | None = None, *, ids: torch.Tensor | None = None,
                item_vectors: ItemVectors | None = None) -> torch.Tensor:
        bias = self.bias if candidates is None else self.bias[candidates]
        logits = F.linear(h, self.output_weight(item_vectors, candidates), bias)  # [..., S]
        if not self.copy:
            return logits
        if ids is None or item_vectors is None:
            raise ValueError(f"a '{self.kind}' head needs the input ids and query vectors (UserEncoder.head_logits)")
        last_only = h.dim() == 2
        hq = h[:, None, :] if last_only else h  # [B, T, C]
        K = ids.shape[1]
        T = hq.shape[1]
        query_pos = torch.arange(K - T, K, device=ids.device)  # [T]
        keys = item_vectors(ids)  # [B, K, C]
        scores = torch.einsum("btc,bkc->btk", self.copy_query(hq), keys) / math.sqrt(self.channels)
        distance = (query_pos[:, None] - torch.arange(K, device=ids.device)[None, :]).clamp(0, COPY_DISTANCES - 1)
        scores = scores + self.recency[distance]  # [B, T, K]
        n_out = self.n_classes if candidates is None else len(candidates)
        copy, has_history = copy_distribution(scores, ids, query_pos, candidates, n_out)
        gate = self.gate(hq).squeeze(-1)  # [B, T]
        out = mix_log_probs(logits if not last_only else logits[:, None, :], gate, copy, has_history)
        return out[:, 0] if last_only else out


class TaskHeads(nn.Module):
    """Heads in task order; ``add_task(name, n_classes, kind)`` appends one. A "softmax" head is an
    ``nn.Linear`` (keys ``heads.<name>.weight/bias``); the other kinds are :class:`QueryHead`."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.heads = nn.ModuleDict()

    @property
    def names(self) -> list[str]:
        return list(self.heads.keys())

    def add_task(self, name: str, n_classes: int, kind: str = "softmax") -> None:
        if name in self.heads:
            raise ValueError(f"head '{name}' exists already")
        if n_classes < 1:
            raise ValueError(f"head '{name}': n_classes must be >= 1, got {n_classes}")
        ref = next(self.parameters(), None)
        if kind == "softmax":
            head: nn.Module = nn.Linear(self.channels, n_classes)
            nn.init.normal_(head.weight, 0.0, 0.01)
            nn.init.constant_(head.bias, 0.1)
        else:
            head = QueryHead(self.channels, n_classes, kind)
        if ref is not None:
            head = head.to(device=ref.device, dtype=ref.dtype)
        self.heads[name] = head

    def kind(self, name: str) -> str:
        head = self.heads[name]
        return head.kind if isinstance(head, QueryHead) else "softmax"

    def n_classes(self, name: str) -> int:
        head = self.heads[name]
        return int(head.n_classes if isinstance(head, QueryHead) else head.out_features)

    def forward(self, h: torch.Tensor, name: str, candidates: torch.Tensor | None = None, *,
                ids: torch.Tensor | None = None, item_vectors: ItemVectors | None = None) -> torch.Tensor:
        """h [..., C] -> logits [..., n_classes]; with ``candidates`` [S] only those classes [..., S].
        ``ids`` (the input query ids) and ``item_vectors`` are needed by tied and copy heads."""
        head = self.heads[name]
        if isinstance(head, QueryHead):
            return head(h, candidates, ids=ids, item_vectors=item_vectors)
        if candidates is None:
            return head(h)
        return torch.nn.functional.linear(h, head.weight[candidates], head.bias[candidates])
