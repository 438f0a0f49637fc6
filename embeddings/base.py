"""Shared types of the embedding stage: the typed config, tokenised batches and the embedder protocols.

An *embedder* turns query strings into vectors of its native width. Sources that work on subwords
(``kobert``, ``hf``) are built from a :class:`SubwordEncoder` (text -> subword ids) plus a pooling
(``subword-mean`` | ``contextual``, see :mod:`querylearn.embeddings.pooling`); ``e5`` gives sentence
vectors directly; ``random`` embeds no text at all: it is a :class:`TableSource`, which makes the whole
table from the vocabulary size. Both kinds are registered by name in ``build.EMBEDDERS``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

SOURCES = ("random", "kobert", "hf", "e5")
POOLINGS = ("subword-mean", "contextual")
SEGMENTS = ("none", "kiwi")
DEFAULT_RANDOM_DIM = 256
DEFAULT_KOBERT_MODEL = "skt/kobert-base-v1"


@dataclass(frozen=True)
class EmbedInitConfig:
    """Resolved options of ``embed-init`` (saved as ``meta.json["config"]``).

    Attributes
    ----------
    source: ``random`` | ``kobert`` | ``hf`` | ``e5``.
    model: model folder or hub id (``kobert`` default ``skt/kobert-base-v1``; required for ``hf``;
        ``None`` for ``random`` and ``e5``).
    pooling: ``subword-mean`` | ``contextual`` for ``kobert``/``hf``; ``sentence`` for ``e5``;
        ``none`` for ``random``.
    segment: ``none`` | ``kiwi`` (morpheme pre-segmentation before subword tokenisation).
    dim: output width. ``None`` keeps the native width; for ``random`` it is the table width
        (default 256); for text sources a PCA projection to ``dim`` is fitted on the vocabulary.
    seed: seed of the random table (other sources are deterministic without it; recorded anyway).
    include_special: also pool over ``[CLS]``/``[SEP]`` (both poolings). Default ``False``: only
        the query's own subwords are averaged. The contextual forward pass always wraps the
        query in ``[CLS] ... [SEP]`` as the model was pre-trained.
    batch_size: queries per forward pass (``contextual``, ``e5``).
    max_length: most tokens per forward pass including ``[CLS]``/``[SEP]`` (``contextual``);
        longer queries are truncated and counted in ``meta.counts.n_truncated``.
    """

    source: str = "kobert"
    model: str | None = None
    pooling: str = "subword-mean"
    segment: str = "none"
    dim: int | None = None
    seed: int = 0
    include_special: bool = False
    batch_size: int = 64
    max_length: int = 128


@dataclass
class TokenizedBatch:
    """Content subword ids of N queries (no special tokens), flattened.

    ``flat_ids``: int64 [T], the ids of query 0, then query 1, ...; ``offsets``: int64 [N + 1],
    query i owns ``flat_ids[offsets[i]:offsets[i + 1]]`` (possibly empty).
    """

    flat_ids: np.ndarray  # [T] int64
    offsets: np.ndarray  # [N + 1] int64

    @classmethod
    def from_lists(cls, id_lists: list[list[int]]) -> TokenizedBatch:
        lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        offsets = np.zeros(len(id_lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64, count=int(offsets[-1]))
        return cls(flat, offsets)

    @property
    def n_queries(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:  # [N] int64
        return np.diff(self.offsets)

    def ids(self, i: int) -> np.ndarray:
        return self.flat_ids[self.offsets[i] : self.offsets[i + 1]]

    def query_index(self) -> np.ndarray:  # [T] int64: the query each flat id belongs to
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.lengths)


class SubwordEncoder(Protocol):
    """Text -> subword ids, with the special-token ids of the model it belongs to."""

    unk_id: int
    pad_id: int
    cls_id: int | None
    sep_id: int | None
    vocab_size: int

    def encode_batch(self, texts: list[str]) -> TokenizedBatch: ...

    def piece_char_lengths(self) -> np.ndarray:
        """int64 [vocab_size]: characters of each piece without word-start marks (``▁``, ``##``)."""
        ...

    def describe(self) -> dict: ...


@dataclass
class EmbedOutput:
    """Vectors of N queries (native width) and what happened to them.

    ``vectors``: float32 [N, D]; rows of queries without any content token are NaN-free but
    meaningless and listed in ``empty`` (the caller replaces them with the ``<unk>`` row).
    ``counts``: tokenisation counts (see :func:`querylearn.embeddings.pooling.token_counts`) or
    ``None`` for sentence encoders.
    """

    vectors: np.ndarray  # [N, D] float32
    empty: np.ndarray  # [N] bool
    counts: dict | None = None
    extra: dict = field(default_factory=dict)


class QueryEmbedder(Protocol):
    """A text source: queries -> vectors of ``native_dim`` floats."""

    native_dim: int

    def embed(self, texts: list[str]) -> EmbedOutput: ...

    def embed_unknown(self) -> np.ndarray:
        """float32 [D]: the vector for ``<unk>`` and for queries with no content token."""
        ...

    def describe(self) -> dict:
        """Model / tokenizer identity and settings for ``meta.json``."""
        ...


@runtime_checkable
class TableSource(Protocol):
    """A source that embeds no text (``random``): it makes the table [V, D] from the vocabulary size."""

    native_dim: int
    embeds_text: bool  # False: ``embed_queries`` has nothing to compute for a new query

    def make_table(self, vocab_size: int) -> np.ndarray:
        """float32 [vocab_size, native_dim]; row 0 (``<pad>``) zero."""
        ...

    def describe(self, vocab_size: int) -> dict:
        """The same keys as ``QueryEmbedder.describe`` (``model`` ... ``native_dim``), plus ``init``."""
        ...
