"""The EmbeddingTable artifact (``embed-init`` output) and its loader.

Stable API used by train-sequence::

    from querylearn.embeddings import load_embedding_table
    table = load_embedding_table(emb_dir)      # -> EmbeddingTable(vectors, queries, meta)
    table.vectors        # float32 [V, D], row i = query id i (row 0 <pad> is zero)
    table.queries        # list[str], id order, queries[0] == "<pad>", queries[1] == "<unk>"
    table.meta           # dict, the parsed meta.json
    table.check_vocab(dataset.vocab)   # ArtifactError unless the ids match the dataset's vocabulary

Directory layout (EMB_DIR)::

    vocab.json        the dataset's QueryVocab, written with QueryVocab.save (kind "vocab"): same ids,
                      same bytes as the dataset's vocab.json; load with QueryVocab.load
    vectors.npy       float32 [V, D], allow_pickle=False
    meta.json         kind "embedding-table", schema_version 1 (fields: docs/embed-init.md)
    projection_mean.npy, projection_components.npy   float64 [D_native], [D, D_native]; only with --dim (PCA)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from querylearn.artifacts import check_manifest, read_json, read_npy
from querylearn.data.vocab import PAD, UNK, QueryVocab
from querylearn.errors import ArtifactError

KIND = "embedding-table"
SCHEMA_VERSION = 1
VOCAB_FILE = "vocab.json"
VECTORS_FILE = "vectors.npy"
META_FILE = "meta.json"
PCA_MEAN_FILE = "projection_mean.npy"
PCA_COMPONENTS_FILE = "projection_components.npy"


@dataclass
class EmbeddingTable:
    """Query vectors aligned with a dataset vocabulary. ``vectors``: float32 [V, D]."""

    vectors: np.ndarray  # [V, D] float32
    queries: list[str]
    meta: dict
    path: Path | None = field(default=None)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.vectors.shape[0])

    def check_vocab(self, vocab: QueryVocab | list[str]) -> None:
        """Raise ArtifactError unless ``vocab`` has exactly this table's queries in the same id order."""
        other = vocab.queries if isinstance(vocab, QueryVocab) else list(vocab)
        where = self.path / VOCAB_FILE if self.path else "embedding table"
        if len(other) != len(self.queries):
            raise ArtifactError(
                f"{where}: {len(self.queries)} queries but the dataset vocabulary has {len(other)} "
                "(re-run 'querylearn embed-init --data DATASET_DIR ...' on this dataset)"
            )
        for i, (a, b) in enumerate(zip(self.queries, other, strict=True)):
            if a != b:
                raise ArtifactError(
                    f"{where}: query id {i} is {a!r} here but {b!r} in the dataset vocabulary "
                    "(re-run 'querylearn embed-init --data DATASET_DIR ...' on this dataset)"
                )


def load_embedding_table(path: str | Path, *, mmap: bool = False) -> EmbeddingTable:
    """Load and check an EmbeddingTable directory (kind, schema_version, shapes, dtype, pad row)."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"{path}: no such embedding-table directory (create it with 'querylearn embed-init')"
        )
    meta = read_json(path / META_FILE)
    check_manifest(path / META_FILE, meta, kind=KIND, schema_version=SCHEMA_VERSION)
    queries = QueryVocab.load(path / VOCAB_FILE).queries
    vectors = read_npy(path / VECTORS_FILE, mmap=mmap)
    if vectors.dtype != np.float32 or vectors.ndim != 2:
        raise ArtifactError(
            f"{path / VECTORS_FILE}: expected float32 [V, D], found {vectors.dtype} {list(vectors.shape)}"
        )
    if vectors.shape[0] != len(queries):
        raise ArtifactError(
            f"{path / VECTORS_FILE}: {vectors.shape[0]} rows but {len(queries)} queries in {VOCAB_FILE}"
        )
    if queries[:2] != [PAD, UNK]:
        raise ArtifactError(f"{path / VOCAB_FILE}: must start with {PAD}, {UNK}")
    if int(meta.get("dim", -1)) != vectors.shape[1]:
        raise ArtifactError(
            f"{path / META_FILE}: dim {meta.get('dim')} but vectors.npy has width {vectors.shape[1]}"
        )
    return EmbeddingTable(vectors, queries, meta, path)
