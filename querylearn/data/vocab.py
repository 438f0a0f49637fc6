"""QueryVocab: normalised query string <-> id, with ``<pad>`` = 0 and ``<unk>`` = 1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from querylearn.artifacts import check_manifest, read_json, write_json
from querylearn.data.normalize import RULE, normalize_query

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
SCHEMA_VERSION = 1


@dataclass
class QueryVocab:
    """Queries in id order (``queries[0] == '<pad>'``, ``queries[1] == '<unk>'``) and their counts.

    Order: ``<pad>``, ``<unk>``, then kept queries by descending count, ties by code-point order
    (deterministic for identical input). ``counts[1]`` holds the occurrences mapped to ``<unk>``.
    """

    queries: list[str]
    counts: list[int]
    min_count: int = 1
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.queries[:2] != [PAD, UNK]:
            raise ValueError("vocabulary must start with <pad>, <unk>")
        self._index = {q: i for i, q in enumerate(self.queries)}

    @classmethod
    def build(cls, counts: Mapping[str, int], *, min_count: int = 1) -> QueryVocab:
        """Build from already-normalised query counts; queries below ``min_count`` become ``<unk>``."""
        kept = sorted(((q, c) for q, c in counts.items() if c >= min_count), key=lambda x: (-x[1], x[0]))
        unk = sum(c for c in counts.values() if c < min_count)
        return cls([PAD, UNK] + [q for q, _ in kept], [0, unk] + [c for _, c in kept], min_count)

    @classmethod
    def from_queries(cls, queries: Iterable[str], *, min_count: int = 1) -> QueryVocab:
        counter: Counter[str] = Counter()
        for q in queries:
            n = normalize_query(q)
            if n:
                counter[n] += 1
        return cls.build(counter, min_count=min_count)

    @property
    def index(self) -> dict[str, int]:
        """Normalised query -> id (read-only use; e.g. ``pandas.Series.map(vocab.index)``)."""
        return self._index

    def __len__(self) -> int:
        return len(self.queries)

    def id(self, query: str, *, normalized: bool = False) -> int:
        """Id of ``query`` (normalised first unless ``normalized``); unknown -> ``UNK_ID``."""
        return self._index.get(query if normalized else normalize_query(query), UNK_ID)

    def ids(self, queries: Iterable[str], *, normalized: bool = False) -> np.ndarray:
        return np.fromiter((self.id(q, normalized=normalized) for q in queries), dtype=np.int64)

    def save(self, path: str | Path) -> None:
        write_json(
            path,
            {
                "kind": "vocab",
                "schema_version": SCHEMA_VERSION,
                "normalisation": RULE,
                "min_count": self.min_count,
                "pad_id": PAD_ID,
                "unk_id": UNK_ID,
                "queries": self.queries,
                "counts": self.counts,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> QueryVocab:
        data = read_json(path)
        check_manifest(path, data, kind="vocab", schema_version=SCHEMA_VERSION)
        return cls(list(data["queries"]), list(data["counts"]), int(data["min_count"]))
