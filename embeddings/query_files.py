"""Input and output files of ``embed-queries``: text or Parquet in, ``.npy`` or Parquet out.

Input: a Parquet file (suffix ``.parquet``/``.pq``, or the ``PAR1`` magic bytes) with a string column
``query`` (one row per query, in order; a null becomes the empty query), else a UTF-8 text file with
one query per line.

Output, chosen by the suffix of ``--out``:

- ``.npy``: float32 [N, D] (row i = input query i) plus ``OUT.json`` describing it (unchanged).
- ``.parquet``: columns ``query`` (the input text), ``normalised`` (the rule's output), ``embedding``
  (fixed-size list of float32), ``in_vocab`` and ``empty`` (bool); the description is the file-level
  metadata key ``querylearn``.

Any other suffix is refused, so a file's name always says what is in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from querylearn.embeddings.build import (
    QueryVectors,
    query_vectors_meta,
    read_queries_file,
    write_query_vectors,
)
from querylearn.embeddings.table import EmbeddingTable
from querylearn.errors import DataError, QuerylearnError

OUTPUT_SUFFIXES = (".npy", ".parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: Path) -> bool:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def read_queries(path: str | Path) -> list[str]:
    """Queries of a text file (one per line) or of a Parquet file's ``query`` column."""
    path = Path(path)
    if not path.is_file():
        raise QuerylearnError(
            f"{path}: queries file not found (one query per line, or Parquet with a 'query' column)"
        )
    if not is_parquet(path):
        return read_queries_file(path)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    if "query" not in schema.names:
        raise DataError(
            path,
            f"missing column 'query' (found: {', '.join(schema.names[:8]) or 'none'})",
            fix="name the column of query texts 'query'",
        )
    column = pq.read_table(path, columns=["query"]).column("query")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise DataError(path, f"column 'query' has type {column.type}, expected strings")
    return ["" if q is None else q for q in column.to_pylist()]


def check_output(out: str | Path) -> str:
    """The output kind ("npy" | "parquet") from the suffix; QuerylearnError for any other suffix."""
    suffix = Path(out).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise QuerylearnError(
            f"--out {out}: unknown suffix {suffix or '(none)'!r}; use .npy (float32 array + OUT.json) or "
            ".parquet (query, normalised, embedding, in_vocab, empty)"
        )
    return suffix[1:]


def write_vectors(out: str | Path, inputs: list[str], result: QueryVectors, table: EmbeddingTable) -> Path:
    """Write the vectors in the format the suffix of ``out`` names; returns the file holding the
    description (``OUT.json`` for .npy, ``out`` itself for .parquet)."""
    kind = check_output(out)
    if kind == "npy":
        return write_query_vectors(out, result, table)
    import pyarrow as pa

    from querylearn.userfile import vectors_column, write_parquet

    meta = query_vectors_meta(result, table)
    frame = pa.table(
        {
            "query": pa.array([str(q) for q in inputs], type=pa.string()),
            "normalised": pa.array(result.queries, type=pa.string()),
            "embedding": vectors_column(result.vectors),
            "in_vocab": pa.array(result.in_vocab, type=pa.bool_()),
            "empty": pa.array(result.empty, type=pa.bool_()),
        }
    ).replace_schema_metadata({"querylearn": json.dumps(meta, ensure_ascii=False)})
    write_parquet(out, frame)
    return Path(out)
