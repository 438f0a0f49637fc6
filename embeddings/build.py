"""``embed-init`` and ``embed-queries`` as plain functions (the CLI in ``cli/embed.py`` only parses flags).

Rules shared by every text source (``kobert``, ``hf``, ``e5``):

- Table row i is the vector of dataset query id i. Row 0 (``<pad>``) is zero. Row 1 (``<unk>``) is the
  source's *unknown* vector: the pooled vector of the single token ``[UNK]`` (subword sources) or the e5
  vector of the empty query. A query with no content subword (empty or whitespace only after the
  tokenizer's preprocessing) also gets the ``<unk>`` row.
- ``--segment kiwi`` rewrites each query text before tokenisation (:mod:`.segment`).
- ``--dim N`` fits a PCA on the real query rows (ids 2..) and applies it to every row; the pad row is
  reset to zero (:mod:`.project`). Without ``--dim`` the native width is kept.
- New queries (``embed_queries``) are normalised with the dataset rule (``normalize_query``), then go
  through the same segmentation, tokenizer, pooling, ``<unk>`` rule and stored projection.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from querylearn import __version__
from querylearn.artifacts import file_sha256, read_npy, write_json, write_npy
from querylearn.config_loader import load_config, to_dict, write_config
from querylearn.data.dataset import load_manifest
from querylearn.data.normalize import normalize_query
from querylearn.data.vocab import QueryVocab
from querylearn.embeddings import segment as segment_mod
from querylearn.embeddings.base import (
    DEFAULT_KOBERT_MODEL,
    EmbedInitConfig,
    QueryEmbedder,
    TableSource,
)
from querylearn.embeddings.project import PcaProjection, fit_pca
from querylearn.embeddings.random_init import RandomTable
from querylearn.embeddings.table import (
    KIND,
    META_FILE,
    PCA_COMPONENTS_FILE,
    PCA_MEAN_FILE,
    SCHEMA_VERSION,
    VECTORS_FILE,
    VOCAB_FILE,
    EmbeddingTable,
    load_embedding_table,
)
from querylearn.errors import ArtifactError, QuerylearnError
from querylearn.registry import Registry

EMBEDDERS = Registry("embedding source")


@EMBEDDERS.register("random")
def _random(cfg: EmbedInitConfig) -> TableSource:
    return RandomTable(int(cfg.dim), cfg.seed)  # resolve_config sets the width


@EMBEDDERS.register("kobert")
def _kobert(cfg: EmbedInitConfig) -> QueryEmbedder:
    from querylearn.embeddings.kobert import load_kobert

    return load_kobert(
        cfg.model or DEFAULT_KOBERT_MODEL,
        pooling=cfg.pooling,
        include_special=cfg.include_special,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
    )


@EMBEDDERS.register("hf")
def _hf(cfg: EmbedInitConfig) -> QueryEmbedder:
    from querylearn.embeddings.hf import load_hf

    return load_hf(
        cfg.model,
        pooling=cfg.pooling,
        include_special=cfg.include_special,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
    )


@EMBEDDERS.register("e5")
def _e5(cfg: EmbedInitConfig) -> QueryEmbedder:
    from querylearn.embeddings.e5 import E5Embedder

    return E5Embedder(batch_size=cfg.batch_size)


def resolve_config(*, source: str, **options) -> EmbedInitConfig:
    """``EmbedInitConfig`` from keyword options (None = not given); ConfigError names the bad flag.

    Kept for library callers; the checks and per-source defaults live in :class:`EmbedInitConfig`.
    """
    return load_config(EmbedInitConfig, None, {"source": source, **options}).require_source()


def build_embedder(cfg: EmbedInitConfig) -> QueryEmbedder | TableSource:
    """The source registered as ``cfg.source`` (a miss lists the available names)."""
    return EMBEDDERS.get(cfg.source)(cfg)


def _segment(cfg: EmbedInitConfig, texts: list[str]) -> list[str]:
    return segment_mod.segment_queries(texts) if cfg.segment == "kiwi" else list(texts)


def embed_texts(
    embedder: QueryEmbedder, texts: list[str], unk: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """Native-width vectors float32 [N, D_native] with the ``<unk>`` rule applied; plus empty mask, counts."""
    out = embedder.embed(texts)
    vectors = out.vectors
    vectors[out.empty] = unk
    return vectors, out.empty, out.counts


def embed_init(data_dir: str | Path, out_dir: str | Path, cfg: EmbedInitConfig) -> EmbeddingTable:
    """Build the EmbeddingTable for the dataset at ``data_dir`` and write it to ``out_dir``."""
    cfg.require_source()
    t0 = time.perf_counter()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    load_manifest(data_dir)  # checks kind / schema version, one-line error when it is no dataset
    vocab_path = data_dir / VOCAB_FILE
    vocab = QueryVocab.load(vocab_path)
    n_vocab = len(vocab)
    timing: dict[str, float] = {}
    counts: dict | None = None
    projection: PcaProjection | None = None
    describe: dict
    t = time.perf_counter()
    embedder = build_embedder(cfg)
    timing["load_s"] = time.perf_counter() - t
    if isinstance(embedder, TableSource):  # embeds no text: the whole table from the vocabulary size
        t = time.perf_counter()
        vectors = embedder.make_table(n_vocab)
        describe = embedder.describe(n_vocab)
        timing["embed_s"] = time.perf_counter() - t
    else:
        describe = embedder.describe()
        t = time.perf_counter()
        texts = _segment(cfg, vocab.queries[2:])
        timing["segment_s"] = time.perf_counter() - t
        t = time.perf_counter()
        unk = embedder.embed_unknown()
        native, _, counts = embed_texts(embedder, texts, unk)
        vectors = np.zeros((n_vocab, embedder.native_dim), dtype=np.float32)
        vectors[1] = unk
        vectors[2:] = native
        timing["embed_s"] = time.perf_counter() - t
        if cfg.dim is not None:
            t = time.perf_counter()
            projection = fit_pca(vectors[2:], int(cfg.dim))
            vectors = projection.apply(vectors)
            vectors[0] = 0.0
            timing["project_s"] = time.perf_counter() - t
    if not np.isfinite(vectors).all():
        raise QuerylearnError(f"{cfg.source}: produced non-finite vectors; check the model at {cfg.model}")
    t = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab.save(out_dir / VOCAB_FILE)
    write_npy(out_dir / VECTORS_FILE, vectors)
    for name in (PCA_MEAN_FILE, PCA_COMPONENTS_FILE):
        (out_dir / name).unlink(missing_ok=True)
    proj_meta = None
    if projection is not None:
        write_npy(out_dir / PCA_MEAN_FILE, projection.mean)
        write_npy(out_dir / PCA_COMPONENTS_FILE, projection.components)
        proj_meta = {
            "method": "pca",
            "fitted_on": "real query rows (ids 2..V-1), float64 SVD; pad row reset to zero",
            "from_dim": int(projection.components.shape[1]),
            "to_dim": projection.dim,
            "explained_variance_ratio": [float(v) for v in projection.explained_variance_ratio],
            "explained_variance_total": float(projection.explained_variance_ratio.sum()),
            "files": {"mean": PCA_MEAN_FILE, "components": PCA_COMPONENTS_FILE},
        }
    timing["write_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    n_real = n_vocab - 2
    timing["queries_per_s"] = n_real / timing["embed_s"] if timing["embed_s"] > 0 else None
    method = cfg.source if isinstance(embedder, TableSource) else f"{cfg.source}-{describe['pooling']}"
    meta = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "querylearn_version": __version__,
        "config": to_dict(cfg),
        "source": cfg.source,
        "method": method,
        "model": describe["model"],
        "tokenizer": describe["tokenizer"],
        "pooling": describe["pooling"],
        "include_special": describe["include_special"],
        "max_length": describe["max_length"],
        "segmentation": segment_mod.describe() if cfg.segment == "kiwi" else {"method": "none"},
        "native_dim": describe["native_dim"],
        "dim": int(vectors.shape[1]),
        "projection": proj_meta,
        "seed": cfg.seed,
        "rows": {"pad": "zero", "unk": _unk_rule(cfg.source)},
        "counts": counts,
        "timing": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in timing.items()},
        "dataset": {
            "path": str(data_dir.resolve()),
            "vocab_file": VOCAB_FILE,
            "vocab_sha256": file_sha256(vocab_path),
            "vocab_size": n_vocab,
        },
        "vectors": {
            "file": VECTORS_FILE,
            "dtype": "float32",
            "shape": [int(s) for s in vectors.shape],
            "sha256": file_sha256(out_dir / VECTORS_FILE),
        },
    }
    if "init" in describe:
        meta["init"] = describe["init"]
    if "vector_kind" in describe:
        meta["vector_kind"] = describe["vector_kind"]
    write_json(out_dir / META_FILE, meta)
    write_config(out_dir, cfg)  # the resolved config, readable again with --config
    return EmbeddingTable(vectors, list(vocab.queries), meta, out_dir)


def _unk_rule(source: str) -> str:
    if source == "random":
        return "random like every other row"
    if source == "e5":
        return "e5 vector of the empty query; also used for queries that are empty after preprocessing"
    return "pooled vector of the single token [UNK]; also used for queries with no content subword"


@dataclass
class QueryVectors:
    """Vectors of new queries. ``vectors`` float32 [N, D]; ``queries`` the normalised strings."""

    vectors: np.ndarray  # [N, D]
    queries: list[str]
    empty: np.ndarray  # [N] bool: given the <unk> row
    in_vocab: np.ndarray  # [N] bool: the normalised query is in the table's vocabulary
    counts: dict | None


class QueryEncoder:
    """Embeds new queries exactly as ``embed-init`` embedded the table's (load once, call many times)."""

    def __init__(self, table: EmbeddingTable, *, model: str | None = None):
        meta = table.meta
        fields = {f.name for f in dataclasses.fields(EmbedInitConfig)}
        cfg = EmbedInitConfig(**{k: v for k, v in meta["config"].items() if k in fields})
        if model is not None:
            cfg = dataclasses.replace(cfg, model=model)
        else:
            # a relative --model was relative to where embed-init ran: use the folder it resolved to
            recorded = (meta.get("model") or {}).get("resolved_path")
            if (
                cfg.model
                and recorded
                and not Path(cfg.model).is_absolute()
                and Path(recorded).is_dir()
                and not (meta.get("model") or {}).get("from_hub")
            ):
                cfg = dataclasses.replace(cfg, model=recorded)
        embedder = build_embedder(cfg)
        if isinstance(embedder, TableSource):
            raise QuerylearnError(
                f"{table.path}: this table is {cfg.source} (source '{cfg.source}'), so a new query has no "
                "vector to compute; build the table from a text source (--source kobert|hf|e5) to embed "
                "unseen queries"
            )
        self.table = table
        self.cfg = cfg
        self.embedder = embedder
        expected = (meta.get("model") or {}).get("sha256") or {}
        found = (self.embedder.describe().get("model") or {}).get("sha256") or {}
        changed = sorted(k for k in expected if k in found and expected[k] != found[k])
        if changed:
            raise ArtifactError(
                f"{table.path / META_FILE}: model files {', '.join(changed)} at {cfg.model} "
                "differ from those "
                "the table was built with; pass --model with the original folder or rebuild the table"
            )
        self.projection: PcaProjection | None = None
        if meta.get("projection"):
            files = meta["projection"]["files"]
            self.projection = PcaProjection(
                read_npy(table.path / files["mean"]),
                read_npy(table.path / files["components"]),
                np.asarray(meta["projection"]["explained_variance_ratio"]),
            )
        self._index = {q: i for i, q in enumerate(table.queries)}

    def embed(self, queries: list[str]) -> QueryVectors:
        normalised = [normalize_query(q) for q in queries]
        texts = _segment(self.cfg, normalised)
        native = self.embedder.embed(texts)
        vectors = native.vectors
        if self.projection is not None:
            vectors = self.projection.apply(vectors)
        vectors[native.empty] = self.table.vectors[1]
        in_vocab = np.array([self._index.get(q, 1) > 1 for q in normalised], dtype=bool)
        return QueryVectors(
            np.ascontiguousarray(vectors, dtype=np.float32), normalised, native.empty, in_vocab, native.counts
        )


def embed_queries(
    emb_dir: str | Path | EmbeddingTable, queries: list[str], *, model: str | None = None
) -> QueryVectors:
    """Embed ``queries`` with the source, settings and projection of the table at ``emb_dir``."""
    table = emb_dir if isinstance(emb_dir, EmbeddingTable) else load_embedding_table(emb_dir)
    return QueryEncoder(table, model=model).embed(queries)


def read_queries_file(path: str | Path) -> list[str]:
    """One query per line (UTF-8, trailing newline optional); every line is kept, blank ones too."""
    path = Path(path)
    if not path.is_file():
        raise QuerylearnError(f"{path}: queries file not found (one query per line, UTF-8)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise QuerylearnError(f"{path}, line {line}: not UTF-8 (save the file as UTF-8)") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def query_vectors_meta(result: QueryVectors, table: EmbeddingTable) -> dict:
    """The description of embedded queries shared by the .npy sidecar and the Parquet metadata."""
    return {
        "kind": "query-vectors",
        "schema_version": 1,
        "querylearn_version": __version__,
        "table": str(table.path.resolve()) if table.path else None,
        "table_vectors_sha256": (table.meta.get("vectors") or {}).get("sha256"),
        "source": table.meta.get("source"),
        "method": table.meta.get("method"),
        "dim": int(result.vectors.shape[1]),
        "n_queries": len(result.queries),
        "n_in_vocab": int(result.in_vocab.sum()),
        "n_empty": int(result.empty.sum()),
        "counts": result.counts,
    }


def write_query_vectors(out: str | Path, result: QueryVectors, table: EmbeddingTable) -> Path:
    """Write ``out`` (float32 [N, D] .npy, row i = input line i) and ``out + '.json'``; return the
    JSON path."""
    out = Path(out)
    write_npy(out, result.vectors)
    side = out.with_name(out.name + ".json")
    meta = query_vectors_meta(result, table)
    write_json(side, {**meta, "queries": result.queries, "in_vocab": [bool(x) for x in result.in_vocab]})
    return side
