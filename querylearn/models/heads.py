"""Per-task output heads (docs/algorithms.md#initialisation) and the next-query head options.

Every task has a linear classifier G_i(h) = W_i h + b_i, W_i ~ N(0, 0.01^2), b_i = 0.1 (the paper's
"softmax" head). The next_query task (T1) may instead use a :class:`QueryHead`:

- ``tied``: W = the input query vectors ``E`` (after the learnt input projection when the
  embed-init table's width differs from the model's): logits = h · proj(E)^T + b, so pretrained
  vectors shape the output side as well, with one storage and one gradient;
- ``copy``: pointer-generator mixture of the softmax with a distribution over the user's own
  earlier queries (See et al. 2017):
      a_{t,k}  = softmax_k( (W_q h_t) · proj(E[x_k]) / sqrt(C) + r[min(t - k, R - 1)] )
                 over k ≤ t with x_k ∉ {pad, unk}
      c_t(q)   = Σ_k a_{t,k} [x_k = q]                               (one scatter over the history ids)
      g_t      = σ(w_g · h_t + b_g)
      log p_t  = log( g_t softmax(W h_t + b) + (1 - g_t) c_t )       (log-sum-exp, never log 0)
  (``r``: a learnt recency bias per distance, initialised to r[d] = d · log 0.9 so that the copy
  distribution starts as the recency-frequency reference ranker); positions with no valid history
  use the softmax alone;
- ``tied-copy``: both.

The copy heads' training loss may add the generator's own CE, λ · CE(softmax(W h_t + b), x_{t+1})
(``next_query.generator_aux``, querylearn.continual.losses): :meth:`TaskHeads.generator_logits`
gives that softmax part alone, so the encoder keeps the plain head's training signal.

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
from querylearn.heuristics import DEFAULT_DECAY

QUERY_HEADS = ("softmax", "tied", "copy", "tied-copy")
COPY_DISTANCES = 64  # recency-bias buckets of the copy attention; longer distances share the last one

# item_vectors(ids) -> vectors [..., C] of query ids (all queries [V, C] for None)
ItemVectors = Callable[[torch.Tensor | None], torch.Tensor]


def copy_allowed(history: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """[B, T, K] bool: position k of ``history`` [B, K] may be copied at row t (k ≤ query_pos[t] and
    it holds a real query, neither padding nor ``<unk>``)."""
    K = history.shape[1]
    valid = (history != PAD_ID) & (history != UNK_ID)  # [B, K]
    causal = torch.arange(K, device=history.device)[None, :] <= query_pos[:, None]  # [T, K]
    return valid[:, None, :] & causal[None, :, :]


def copy_attention(scores: torch.Tensor, history: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
    """a_{t,k}: softmax of ``scores`` [B, T, K] over the positions k ≤ query_pos[t] of ``history``
    [B, K] that hold a real query (never padding or ``<unk>``). -> [B, T, K], rows without such a
    position all zero (not NaN)."""
    allowed = copy_allowed(history, query_pos)  # [B, T, K]
    attn = torch.softmax(scores.float().masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.where(allowed, attn, torch.zeros((), device=attn.device))


def copy_log_mixture(
    gen_logits: torch.Tensor,
    gate_logit: torch.Tensor,
    attn: torch.Tensor,
    history: torch.Tensor,
    query_pos: torch.Tensor,
    candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """log(g softmax(z) + (1 - g) c) over the output classes, with c_t(q) = Σ_k a_{t,k} [x_k = q].

    gen_logits z [B, T, S], gate_logit [B, T], attn a [B, T, K] (:func:`copy_attention`), history
    [B, K] ids, query_pos [T], candidates [S] distinct class ids in any order (None: S = all
    classes, class = id).
    -> [B, T, S] log-probabilities; rows whose attention is all zero get log softmax(z) alone.

    c is sparse (at most K classes per row), so the mixture is log g + log softmax(z) everywhere
    and log-sum-exp only at the history's classes: one scatter, written once per distinct class
    (by its most recent occurrence; the other positions add 0, so no gradient counts twice).
    """
    K = history.shape[1]
    log_gen = torch.log_softmax(gen_logits.float(), dim=-1)  # [B, T, S]
    attended = copy_allowed(history, query_pos)  # [B, T, K]
    has_history = attended.any(dim=-1)  # [B, T]
    gate = gate_logit.float()
    log_g = torch.where(has_history, F.logsigmoid(gate), torch.zeros((), device=gate.device))  # [B, T]
    same = (history[:, :, None] == history[:, None, :]).float()  # [B, K, K]
    copy_at = torch.bmm(attn, same)  # [B, T, K] c_t of the query at position k
    arange = torch.arange(K, device=history.device)
    later_same = torch.where((same > 0) & (arange[None, None, :] > arange[None, :, None]), arange, K)
    next_same = later_same.min(dim=-1).values  # [B, K] next position holding the same query (K: none)
    writer = attended & (next_same[:, None, :] > query_pos[None, :, None])  # [B, T, K]
    if candidates is None:
        index = history
    else:  # only history queries in the candidate list, at their positions in it (any order)
        ordered, order = torch.sort(candidates)
        pos = torch.searchsorted(ordered, history.contiguous()).clamp_max(len(candidates) - 1)  # [B, K]
        writer = writer & (ordered[pos] == history)[:, None, :]
        index = order[pos]
    index = torch.where(writer, index[:, None, :], 0)  # [B, T, K]
    base = log_g[..., None] + log_gen  # [B, T, S]
    at = base.gather(-1, index)  # [B, T, K] log g + log softmax(z) at the copied classes
    tiny = torch.finfo(torch.float32).tiny
    mixed = torch.logaddexp(at, F.logsigmoid(-gate)[..., None] + torch.log(copy_at.clamp_min(tiny)))
    return base.scatter_add(-1, index, torch.where(writer, mixed - at, torch.zeros((), device=at.device)))


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
            # r[d] = d log(decay): before any training the copy distribution (content scores ≈ 0)
            # is the recency-frequency reference ranker of querylearn.heuristics
            self.recency = nn.Parameter(
                torch.arange(COPY_DISTANCES, dtype=torch.float32) * math.log(DEFAULT_DECAY)
            )

    def output_weight(
        self, item_vectors: ItemVectors | None, candidates: torch.Tensor | None
    ) -> torch.Tensor:
        """The output matrix [S, C] (the tied query vectors, or this head's own weight)."""
        if not self.tied:
            return self.weight if candidates is None else self.weight[candidates]
        if item_vectors is None:
            raise ValueError(
                f"a '{self.kind}' head needs the encoder's query vectors (UserEncoder.head_logits)"
            )
        return item_vectors(candidates)

    def generator_logits(
        self,
        h: torch.Tensor,
        candidates: torch.Tensor | None = None,
        *,
        item_vectors: ItemVectors | None = None,
    ) -> torch.Tensor:
        """The generator alone, W h + b: h [..., C] -> logits [..., S] (the softmax part of the copy
        mixture; the whole output of a head without a copy component)."""
        bias = self.bias if candidates is None else self.bias[candidates]
        return F.linear(h, self.output_weight(item_vectors, candidates), bias)

    def forward(
        self,
        h: torch.Tensor,
        candidates: torch.Tensor | None = None,
        *,
        ids: torch.Tensor | None = None,
        item_vectors: ItemVectors | None = None,
        detach_copy: bool = False,
    ) -> torch.Tensor:
        logits = self.generator_logits(h, candidates, item_vectors=item_vectors)  # [..., S]
        if not self.copy:
            return logits
        if ids is None or item_vectors is None:
            raise ValueError(
                f"a '{self.kind}' head needs the input ids and query vectors (UserEncoder.head_logits)"
            )
        last_only = h.dim() == 2
        hq = h[:, None, :] if last_only else h  # [B, T, C]
        K = ids.shape[1]
        T = hq.shape[1]
        query_pos = torch.arange(K - T, K, device=ids.device)  # [T]
        keys = item_vectors(ids)  # [B, K, C]
        copy_in = hq
        if detach_copy:  # the copy path trains its own weights only; the encoder learns from W h + b
            copy_in, keys = hq.detach(), keys.detach()
        scores = torch.einsum("btc,bkc->btk", self.copy_query(copy_in), keys) / math.sqrt(self.channels)
        distance = (query_pos[:, None] - torch.arange(K, device=ids.device)[None, :]).clamp(
            0, COPY_DISTANCES - 1
        )
        scores = scores + self.recency[distance]  # [B, T, K]
        attn = copy_attention(scores, ids, query_pos)  # [B, T, K]
        gate = self.gate(copy_in).squeeze(-1)  # [B, T]
        out = copy_log_mixture(
            logits[:, None, :] if last_only else logits, gate, attn, ids, query_pos, candidates
        )
        return out[:, 0] if last_only else out


class TaskHeads(nn.Module):
    """Heads in task order; ``add_task(name, n_classes, kind)`` appends one. ``copy_grad``: "full" |
    "head" (``next_query.copy_grad``). A "softmax" head is an
    ``nn.Linear`` (keys ``heads.<name>.weight/bias``); the other kinds are :class:`QueryHead`."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.heads = nn.ModuleDict()
        # "full": the copy path's gradient reaches the encoder and the query vectors; "head": they
        # read h and E detached, so only the gate, W_q and r learn from it (a training switch, set
        # from next_query.copy_grad; it changes no output value)
        self.copy_grad = "full"

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

    def has_copy(self, name: str) -> bool:
        """Whether ``name``'s head mixes in a copy distribution (its output is log-probabilities)."""
        head = self.heads[name]
        return isinstance(head, QueryHead) and head.copy

    def generator_logits(
        self,
        h: torch.Tensor,
        name: str,
        candidates: torch.Tensor | None = None,
        *,
        item_vectors: ItemVectors | None = None,
    ) -> torch.Tensor:
        """The softmax generator of ``name``'s head alone: h [..., C] -> logits [..., n | S] (for a
        copy head, the distribution the gate mixes with the copy distribution)."""
        head = self.heads[name]
        if isinstance(head, QueryHead):
            return head.generator_logits(h, candidates, item_vectors=item_vectors)
        return self(h, name, candidates)

    def forward(
        self,
        h: torch.Tensor,
        name: str,
        candidates: torch.Tensor | None = None,
        *,
        ids: torch.Tensor | None = None,
        item_vectors: ItemVectors | None = None,
    ) -> torch.Tensor:
        """h [..., C] -> logits [..., n_classes]; with ``candidates`` [S] only those classes [..., S].
        ``ids`` (the input query ids) and ``item_vectors`` are needed by tied and copy heads."""
        head = self.heads[name]
        if isinstance(head, QueryHead):
            detach = self.copy_grad == "head"
            return head(h, candidates, ids=ids, item_vectors=item_vectors, detach_copy=detach)
        if candidates is None:
            return head(h)
        return torch.nn.functional.linear(h, head.weight[candidates], head.bias[candidates])
