"""Nearest neighbours by cosine similarity over query or user vectors.

Two backends behind one :class:`VectorIndex`:

- ``exact``: brute-force inner products of L2-normalised rows (numpy, float32), ties broken by row
  order. Used for small tables (``auto`` below ``exact_below`` rows, default 50,000) and whenever the
  ANN library is not installed.
- ``hnsw``: faiss ``IndexHNSWFlat`` with the inner-product metric on the normalised rows
  (graph-based approximate search; ``pip install 'querylearn[ann]'`` installs ``faiss-cpu``).

A row that is all zeros (``<pad>``) has no direction; it is never returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from querylearn.errors import QuerylearnError

METHODS = ("auto", "exact", "hnsw")
EXACT_BELOW = 50_000


def have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; zero rows stay zero. [N, D] -> [N, D] float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def exact_search(
    base: np.ndarray, queries: np.ndarray, k: int, *, block: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows of ``base`` [N, D] by inner product for each of ``queries`` [Q, D] (both already
    normalised). -> (rows int64 [Q, k'], scores float32 [Q, k']) with k' = min(k, N); order: score
    descending, then row ascending."""
    k = min(k, len(base))
    rows = np.zeros((len(queries), k), dtype=np.int64)
    scores = np.zeros((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), block):
        sims = queries[start : start + block] @ base.T  # [b, N]
        for j, s in enumerate(sims):
            top = np.argpartition(-s, k - 1)[:k] if k < len(s) else np.arange(len(s))
            # the k-th score may be tied with rows outside the partition: take every row >= it
            cut = s[top].min()
            cand = np.flatnonzero(s >= cut)
            order = np.lexsort((cand, -s[cand]))[:k]
            rows[start + j] = cand[order]
            scores[start + j] = s[cand[order]]
    return rows, scores


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k rows ([Q, k]) that ``found`` ([Q, k]) contains."""
    hits = [
        len(set(f.tolist()) & set(t.tolist())) / max(len(t), 1) for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0


@dataclass
class Neighbour:
    key: str
    score: float
    row: int


class VectorIndex:
    """Cosine-similarity index over ``vectors`` [N, D] with a string ``key`` per row.

    ``method``: "auto" (hnsw at or above ``exact_below`` rows when faiss is installed, else exact),
    "exact" or "hnsw". ``m``, ``ef_construction``, ``ef_search``: HNSW graph degree and beam widths.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        keys: list[str],
        *,
        method: str = "auto",
        exact_below: int = EXACT_BELOW,
        m: int = 32,
        ef_construction: int = 200,
        ef_search: int = 128,
        threads: int = 0,
    ):
        if method not in METHODS:
            raise QuerylearnError(f"--method {method!r}: choose one of {', '.join(METHODS)}")
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(keys):
            raise QuerylearnError(f"{len(keys)} keys for vectors of shape {vectors.shape}")
        self.keys = list(keys)
        self._pos = {k: i for i, k in enumerate(self.keys)}
        valid = np.linalg.norm(vectors, axis=1) > 0
        self._rows = np.flatnonzero(valid)  # index position -> table row
        self._base = normalise_rows(vectors[valid])
        if method == "hnsw" and not have_faiss():
            raise QuerylearnError(
                "--method hnsw needs faiss: pip install 'querylearn[ann]' (or use --method exact)"
            )
        if method == "auto":
            method = "hnsw" if len(self._base) >= exact_below and have_faiss() else "exact"
        self.method = method
        self._index = None
        if method == "hnsw":
            import faiss

            if threads > 0:
                faiss.omp_set_num_threads(threads)
            index = faiss.IndexHNSWFlat(self._base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
            index.add(self._base)
            self._index = index

    def __len__(self) -> int:
        return len(self._base)

    def row_of(self, key: str) -> int | None:
        return self._pos.get(key)

    def search(
        self, queries: np.ndarray, k: int, *, exclude: list[int | None] | None = None
    ) -> list[list[Neighbour]]:
        """k nearest rows to each of ``queries`` [Q, D]; ``exclude[q]``: a table row left out of q's
        answer (the query's own row)."""
        if k < 1:
            raise QuerylearnError(f"-k {k}: must be at least 1")
        queries = normalise_rows(np.atleast_2d(queries))
        want = min(k + 1, len(self._base))
        if self._index is not None:
            scores, pos = self._index.search(queries, want)
        else:
            pos, scores = exact_search(self._base, queries, want)
        out = []
        for q in range(len(queries)):
            skip = None if exclude is None else exclude[q]
            found = []
            for p, s in zip(pos[q], scores[q], strict=True):
                if p < 0:
                    continue
                row = int(self._rows[p])
                if row == skip:
                    continue
                found.append(Neighbour(self.keys[row], float(s), row))
            out.append(found[:k])
        return out


@dataclass
class NeighbourResult:
    """The answer for one query or user: ``label`` says what was asked, ``embedded`` whether the query
    was outside the vocabulary and had to be embedded."""

    label: str
    neighbours: list[Neighbour]
    method: str
    embedded: bool = False


def _query_vectors(emb, text_model: str | None):
    """(vectors [V, D], queries in id order, embed(texts) -> [N, D]) of an embed-init table or an
    export-model folder (whose trained input vectors are used)."""
    from pathlib import Path

    from querylearn.pretrained import CONFIG_FILE, UserEncoder

    emb = Path(emb)
    if (emb / CONFIG_FILE).is_file():
        encoder = UserEncoder.from_pretrained(emb, text_model=text_model)
        return (
            encoder.input_vectors(),
            list(encoder.vocab.queries),
            lambda t: encoder.unseen_query_vectors(t)[0],
        )
    from querylearn.embeddings import QueryEncoder, load_embedding_table

    table = load_embedding_table(emb)
    return (
        np.asarray(table.vectors),
        list(table.queries),
        lambda t: QueryEncoder(table, model=text_model).embed(t).vectors,
    )


def query_neighbours(
    emb, queries: list[str], k: int = 10, *, method: str = "auto", text_model: str | None = None
) -> list[NeighbourResult]:
    """The ``k`` queries of ``emb`` (embed-init table or export-model folder) nearest to each query.

    A query in the vocabulary is looked up (and left out of its own answer); another one is embedded
    by the table's source (mapped into the trained space for a model folder)."""
    from querylearn.data.normalize import normalize_query

    vectors, keys, embed = _query_vectors(emb, text_model)
    index = VectorIndex(vectors[2:], keys[2:], method=method)  # <pad> and <unk> are no answers
    texts = [normalize_query(q) for q in queries]
    rows = [index.row_of(t) for t in texts]
    missing = sorted({t for t, r in zip(texts, rows, strict=True) if r is None})
    embedded = dict(zip(missing, embed(missing), strict=True)) if missing else {}
    qvecs = np.stack([embedded[t] if r is None else vectors[2 + r] for t, r in zip(texts, rows, strict=True)])
    found = index.search(qvecs, k, exclude=rows)
    return [
        NeighbourResult(repr(q), f, index.method, r is None)
        for q, f, r in zip(queries, found, rows, strict=True)
    ]


def user_neighbours(
    users,
    *,
    user_ids: list[str] = (),
    queries: list[str] = (),
    model=None,
    k: int = 10,
    method: str = "auto",
    text_model: str | None = None,
) -> list[NeighbourResult]:
    """The ``k`` users of the Parquet file ``users`` nearest to each of ``user_ids`` (left out of their
    own answer) and to a user whose only query is each of ``queries`` (encoded by the model folder
    ``model``, which must be the one that wrote ``users``)."""
    from querylearn.userfile import read_user_vectors

    ids, vectors, _ = read_user_vectors(users)
    index = VectorIndex(vectors, ids, method=method)
    qvecs, exclude, labels = [], [], []
    for u in user_ids:
        row = index.row_of(u)
        if row is None:
            raise QuerylearnError(f"--user {u}: not a user_id of {users}")
        qvecs.append(vectors[row])
        exclude.append(row)
        labels.append(f"user {u}")
    if queries:
        if model is None:
            raise QuerylearnError(
                "--users with --query needs --model DIR to embed the query as a one-query user"
            )
        from querylearn.pretrained import UserEncoder

        encoder = UserEncoder.from_pretrained(model, text_model=text_model)
        qvecs.extend(encoder.encode([[q] for q in queries]))
        exclude.extend([None] * len(queries))
        labels.extend(f"a user who searched {q!r}" for q in queries)
    found = index.search(np.stack(qvecs), k, exclude=exclude)
    return [NeighbourResult(label, f, index.method) for label, f in zip(labels, found, strict=True)]
