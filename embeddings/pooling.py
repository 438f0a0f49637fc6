"""Poolings over subword ids: ``subword-mean`` (input-embedding rows) and ``contextual`` (last layer).

Both are written once and shared by every subword source (``kobert``, ``hf``).

- ``subword-mean``: v_q = (1/|S_q|) * sum_{s in S_q} E[s], with E the model's input word-embedding
  matrix and S_q the query's subword ids (optionally plus [CLS]/[SEP]). Computed with
  ``torch.nn.functional.embedding_bag`` over the flat id array: one vectorised lookup, no loop per query.
- ``contextual``: v_q = mean of the last hidden states over the query's positions. Queries are
  wrapped as ``[CLS] q [SEP]``, sorted by length, padded per batch and run with an attention mask;
  padded positions are excluded both by the mask and from the mean.
"""

from __future__ import annotations

import numpy as np
import torch

from querylearn.embeddings.base import EmbedOutput, SubwordEncoder, TokenizedBatch
from querylearn.progress import track

CHUNK = 262144  # queries per embedding_bag call (bounds the index temporaries)


def subword_mean(
    weight: torch.Tensor,  # [V, D]
    batch: TokenizedBatch,
    *,
    extra_ids: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``weight`` rows of each query's ids (plus ``extra_ids``, e.g. [CLS], [SEP]).

    Returns (vectors float32 [N, D], empty bool [N]); a query with no content id is ``empty``
    (its row holds only the ``extra_ids`` mean, or zeros when there are none).
    """
    n = batch.n_queries
    lengths = batch.lengths  # [N]
    if n == 0:
        return np.zeros((0, weight.shape[1]), dtype=np.float32), lengths == 0
    denom = (lengths + len(extra_ids)).astype(np.float32)  # [N]
    inv = np.divide(1.0, denom, out=np.zeros_like(denom), where=denom > 0)  # [N] 1/|S_q|
    per_id = np.repeat(inv, lengths)  # [T]: each id weighted 1/|S_q|, so the bag sum is the mean
    chunks = []
    with torch.inference_mode():
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            lo, hi = int(batch.offsets[start]), int(batch.offsets[stop])
            chunks.append(
                torch.nn.functional.embedding_bag(
                    torch.from_numpy(batch.flat_ids[lo:hi]),  # [T_chunk]
                    weight,
                    torch.from_numpy(batch.offsets[start:stop] - lo),  # [n_chunk]
                    mode="sum",
                    per_sample_weights=torch.from_numpy(per_id[lo:hi]).to(weight.dtype),
                )
            )  # [n_chunk, D]
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)  # [N, D], no extra copy for one chunk
        if extra_ids:  # + (E[cls] + E[sep]) / |S_q| as a rank-1 update
            extra_sum = weight[list(extra_ids)].sum(0)  # [D]
            out += torch.from_numpy(inv).unsqueeze(1) * extra_sum
    return out.to(torch.float32).numpy(), lengths == 0


def contextual_mean(
    model: torch.nn.Module,
    batch: TokenizedBatch,
    *,
    cls_id: int | None,
    sep_id: int | None,
    pad_id: int,
    include_special: bool,
    batch_size: int,
    max_length: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean of the last hidden states over each query's tokens.

    Returns (vectors float32 [N, D], empty bool [N], n_truncated). Content longer than
    ``max_length`` minus the special tokens is cut at the end.
    """
    n = batch.n_queries
    n_special = int(cls_id is not None) + int(sep_id is not None)
    keep = max(1, max_length - n_special)
    lengths = np.minimum(batch.lengths, keep)  # [N]
    n_truncated = int((batch.lengths > keep).sum())
    param = next(model.parameters())
    dim = int(model.config.hidden_size)
    out = np.zeros((n, dim), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")  # similar lengths share a batch (less padding)
    with torch.inference_mode():
        for start in track(range(0, n, batch_size), "embedding queries"):
            idx = order[start : start + batch_size]  # [B]
            lens = lengths[idx]  # [B] content tokens kept
            width = int(lens.max()) + n_special
            first = int(cls_id is not None)
            col = np.arange(width)[None, :]  # [1, L]
            content = (col >= first) & (col < first + lens[:, None])  # [B, L]
            src = batch.offsets[idx][:, None] + (col - first)  # [B, L] flat index of each content slot
            ids = np.full((len(idx), width), pad_id, dtype=np.int64)  # [B, L]
            ids[content] = batch.flat_ids[src[content]]
            rows = np.arange(len(idx))
            if cls_id is not None:
                ids[:, 0] = cls_id
            if sep_id is not None:
                ids[rows, first + lens] = sep_id
            attn = (col < (lens + n_special)[:, None]).astype(np.int64)  # [B, L]
            pool = (attn if include_special else content).astype(np.float32)  # [B, L] positions averaged
            hidden = model(
                input_ids=torch.from_numpy(ids).to(param.device),
                attention_mask=torch.from_numpy(attn).to(param.device),
            ).last_hidden_state  # [B, L, D]
            weights = torch.from_numpy(pool).to(hidden.device, hidden.dtype).unsqueeze(-1)  # [B, L, 1]
            summed = (hidden * weights).sum(1)  # [B, D]
            denom = weights.sum(1).clamp_min(1.0)  # [B, 1]
            out[idx] = (summed / denom).float().cpu().numpy()
    return out, batch.lengths == 0, n_truncated


def token_counts(batch: TokenizedBatch, *, unk_id: int, piece_chars: np.ndarray) -> dict:
    """Tokenisation counts for ``meta.json`` (vectorised over the flat id array).

    - ``n_empty``: queries with no content subword (empty / whitespace only after preprocessing).
    - ``n_only_unk``: queries whose every subword is the unknown token.
    - ``n_with_unk``: queries with at least one unknown subword.
    - ``n_only_single_chars``: queries whose every subword (ignoring bare word-start pieces ``▁``)
      is one character, e.g. a Hangul syllable per piece, and not unknown.
    - ``mean_subwords``: mean content subwords per query.
    """
    n = batch.n_queries
    lengths = batch.lengths
    qi = batch.query_index()  # [T]
    is_unk = batch.flat_ids == unk_id  # [T]
    chars = piece_chars[batch.flat_ids]  # [T]
    n_unk = np.bincount(qi[is_unk], minlength=n)
    n_marks = np.bincount(qi[(chars == 0) & ~is_unk], minlength=n)  # bare "▁" pieces
    n_single = np.bincount(qi[(chars == 1) & ~is_unk], minlength=n)
    has = lengths > 0
    return {
        "n_queries": int(n),
        "n_empty": int((~has).sum()),
        "n_only_unk": int((has & (n_unk == lengths)).sum()),
        "n_with_unk": int((n_unk > 0).sum()),
        "n_only_single_chars": int((has & (n_single > 0) & (n_single + n_marks == lengths)).sum()),
        "mean_subwords": float(lengths.mean()) if n else 0.0,
    }


class BertEmbedder:
    """A BERT-style model + its :class:`SubwordEncoder` + a pooling: the ``kobert`` and ``hf`` sources."""

    def __init__(
        self,
        tokenizer: SubwordEncoder,
        model: torch.nn.Module,
        *,
        pooling: str,
        include_special: bool,
        batch_size: int,
        max_length: int,
        model_info: dict,
    ):
        self.tokenizer = tokenizer
        self.model = model
        self.pooling = pooling
        self.include_special = include_special
        self.batch_size = batch_size
        # absolute position embeddings bound the forward length (512 for KoBERT)
        max_positions = getattr(model.config, "max_position_embeddings", None)
        self.max_length = min(max_length, max_positions) if max_positions else max_length
        self.model_info = model_info
        self.native_dim = int(model.config.hidden_size)
        self._piece_chars = tokenizer.piece_char_lengths()

    def _specials(self) -> tuple[int, ...]:
        return tuple(i for i in (self.tokenizer.cls_id, self.tokenizer.sep_id) if i is not None)

    def pool(self, batch: TokenizedBatch) -> tuple[np.ndarray, np.ndarray, int]:
        if self.pooling == "subword-mean":
            weight = self.model.get_input_embeddings().weight.detach().float().cpu()  # [V, D]
            extra = self._specials() if self.include_special else ()
            vectors, empty = subword_mean(weight, batch, extra_ids=extra)
            return vectors, empty, 0
        return contextual_mean(
            self.model,
            batch,
            cls_id=self.tokenizer.cls_id,
            sep_id=self.tokenizer.sep_id,
            pad_id=self.tokenizer.pad_id,
            include_special=self.include_special,
            batch_size=self.batch_size,
            max_length=self.max_length,
        )

    def embed(self, texts: list[str]) -> EmbedOutput:
        batch = self.tokenizer.encode_batch(texts)
        vectors, empty, n_truncated = self.pool(batch)
        counts = token_counts(batch, unk_id=self.tokenizer.unk_id, piece_chars=self._piece_chars)
        counts["n_truncated"] = n_truncated
        return EmbedOutput(vectors, empty, counts)

    def embed_unknown(self) -> np.ndarray:
        """The pooled vector of the single token sequence [UNK] (float32 [D])."""
        batch = TokenizedBatch(
            np.array([self.tokenizer.unk_id], dtype=np.int64), np.array([0, 1], dtype=np.int64)
        )
        return self.pool(batch)[0][0]

    def describe(self) -> dict:
        return {
            "model": self.model_info,
            "tokenizer": self.tokenizer.describe(),
            "pooling": self.pooling,
            "include_special": self.include_special,
            "max_length": self.max_length if self.pooling == "contextual" else None,
            "native_dim": self.native_dim,
        }
