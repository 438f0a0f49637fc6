"""The user-vector Parquet file (UserRepresentations): one layout to write, both to read.

Layouts:

- ``embedding`` (default): ``user_id`` (string) and ``embedding`` (fixed-size list of float32, length
  D). polars, DuckDB, pandas and Arrow read it as one vector per row without a cast.
- ``wide`` (``--wide``): ``user_id`` then one float32 column per dimension ``v0 .. v{D-1}`` (the layout
  of querylearn 0.1).

The file-level metadata key ``querylearn`` holds JSON describing where the vectors came from (kind
"user-representations", schema_version, ``layout``, and the writer's fields).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from querylearn.artifacts import atomic_write
from querylearn.errors import DataError

KIND = "user-representations"
SCHEMA_VERSION = 1
EMBEDDING = "embedding"
LAYOUTS = ("embedding", "wide")
_VEC = re.compile(r"^v(\d+)$")


def vectors_column(vectors: np.ndarray):
    """[N, D] -> pyarrow FixedSizeListArray<float32>[D] (zero-copy from a contiguous float32 array)."""
    import pyarrow as pa

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1), type=pa.float32()), vectors.shape[1]
    )


def user_vectors_table(user_ids: list[str], vectors: np.ndarray, info: dict, *, wide: bool = False):
    """pyarrow Table of the file: ``user_id`` + ``embedding`` (or ``v0..`` when ``wide``) + metadata."""
    import pyarrow as pa

    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(user_ids) != len(vectors):
        raise ValueError(f"{len(user_ids)} user ids for vectors of shape {vectors.shape}")
    columns: dict = {"user_id": pa.array([str(u) for u in user_ids], type=pa.string())}
    if wide:
        for d in range(vectors.shape[1]):
            columns[f"v{d}"] = pa.array(vectors[:, d], type=pa.float32())
    else:
        columns[EMBEDDING] = vectors_column(vectors)
    meta = {"kind": KIND, "schema_version": SCHEMA_VERSION, **info, "layout": "wide" if wide else "embedding"}
    return pa.table(columns).replace_schema_metadata({"querylearn": json.dumps(meta, ensure_ascii=False)})


def write_parquet(path: str | Path, table) -> None:
    """Write a pyarrow Table to ``path`` atomically (mode from the umask)."""
    import pyarrow.parquet as pq

    atomic_write(path, lambda tmp: pq.write_table(table, str(tmp)))


def write_user_vectors(
    path: str | Path, user_ids: list[str], vectors: np.ndarray, info: dict, *, wide: bool = False
) -> dict:
    """Write the file; returns the metadata stored in it."""
    table = user_vectors_table(user_ids, vectors, info, wide=wide)
    write_parquet(path, table)
    return json.loads(table.schema.metadata[b"querylearn"])


def embedding_matrix(path: str | Path, column) -> np.ndarray:
    """A list / fixed-size-list column of numbers -> float32 [N, D]; DataError names the first bad row."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    typ = column.type
    if not (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)):
        raise DataError(
            path,
            f"column '{EMBEDDING}' has type {typ}, expected a list of float32",
            fix="write it with 'querylearn export-users' or as fixed_size_list<float32>",
        )
    value_type = typ.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise DataError(path, f"column '{EMBEDDING}' holds {value_type}, expected float32")
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(path, f"empty '{EMBEDDING}' value", row=row + 1)
    if len(column) == 0:
        return np.zeros((0, typ.list_size if pa.types.is_fixed_size_list(typ) else 0), dtype=np.float32)
    lengths = (
        np.full(len(column), typ.list_size)
        if pa.types.is_fixed_size_list(typ)
        else column.value_lengths().to_numpy(zero_copy_only=False)
    )
    if (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise DataError(
            path,
            f"'{EMBEDDING}' of row {row + 1} has {lengths[row]} values, row 1 has {lengths[0]}",
            row=row + 1,
            fix="every vector must have the same length",
        )
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return flat.reshape(len(column), int(lengths[0]))


def read_user_vectors(path: str | Path) -> tuple[list[str], np.ndarray, dict]:
    """(user_ids, vectors float32 [U, D], metadata) from either layout."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(
            path, "file not found", fix="write it with 'querylearn export-users' or 'embed-users'"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    columns = table.column_names
    if "user_id" not in columns:
        raise DataError(
            path,
            f"missing column 'user_id' (found: {', '.join(columns[:8])})",
            fix="columns user_id + embedding (or v0..v{D-1})",
        )
    if EMBEDDING in columns:
        vectors = embedding_matrix(path, table.column(EMBEDDING))
    else:
        vec_cols = sorted((int(m.group(1)), c) for c in columns if (m := _VEC.match(c)))
        if not vec_cols or [i for i, _ in vec_cols] != list(range(len(vec_cols))):
            raise DataError(
                path,
                "no 'embedding' column and no contiguous v0..v{D-1} columns",
                fix="write it with 'querylearn export-users'",
            )
        vectors = np.column_stack(
            [table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for _, c in vec_cols]
        )
    raw = (table.schema.metadata or {}).get(b"querylearn")
    info = json.loads(raw) if raw else {}
    return [str(u) for u in table.column("user_id").to_pylist()], vectors, info
