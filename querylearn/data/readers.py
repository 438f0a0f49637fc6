"""Chunked, validated readers for CSV / Parquet tables.

Every problem becomes a one-line :class:`DataError` naming the file, the row (1-based line
number in the file, header = row 1; for Parquet the 1-based data row) and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from querylearn.errors import DataError

CHUNK_ROWS = 500_000


def _first_bad_utf8_row(path: Path) -> int:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return lineno
    return 1


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def iter_table(
    path: str | Path,
    required: tuple[str, ...],
    *,
    chunk_rows: int = CHUNK_ROWS,
    sep: str = ",",
    allow_empty: tuple[str, ...] = (),
) -> Iterator[pd.DataFrame]:
    """Yield chunks with the ``required`` columns as strings plus ``_row`` (file row number).

    Raises DataError for a missing/empty file, missing columns, non-UTF-8 bytes, rows with the
    wrong number of fields and empty required values.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", fix="check the path")
    if path.stat().st_size == 0:
        raise DataError(path, "the file is empty", fix=f"write a header row with columns {', '.join(required)} and data rows")
    if _is_parquet(path):
        yield from _iter_parquet(path, required, chunk_rows, allow_empty)
        return
    yield from _iter_csv(path, required, chunk_rows, sep, allow_empty)


def _check_columns(path: Path, columns: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            path,
            f"missing column '{missing[0]}' (found: {', '.join(map(str, columns)) or 'none'})",
            row=1,
            fix=f"the header must name the columns {', '.join(required)}",
        )


def _check_values(path: Path, chunk: pd.DataFrame, required: tuple[str, ...], allow_empty: tuple[str, ...]) -> None:
    for col in required:
        if col in allow_empty:
            chunk[col] = chunk[col].fillna("")
            continue
        values = chunk[col]
        bad = values.isna() | (values.str.strip() == "")
        if bad.any():
            row = int(chunk.loc[bad.idxmax(), "_row"])
            raise DataError(path, f"empty value in column '{col}'", row=row, fix="fill it in or delete the row")


_LINE_RE = re.compile(r"line (\d+)")


def _iter_csv(
    path: Path, required: tuple[str, ...], chunk_rows: int, sep: str, allow_empty: tuple[str, ...]
) -> Iterator[pd.DataFrame]:
    try:
        header = pd.read_csv(path, nrows=0, sep=sep, encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not valid UTF-8", row=_first_bad_utf8_row(path), fix="re-save the file as UTF-8") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, "the file is empty", fix=f"write a header row with columns {', '.join(required)}") from None
    columns = [str(c).strip() for c in header.columns]
    _check_columns(path, columns, required)
    offset = 2  # first data row is line 2
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[],
            chunksize=chunk_rows,
            encoding="utf-8",
            skipinitialspace=False,
            on_bad_lines="error",
        )
        any_rows = False
        for chunk in reader:
            chunk.columns = columns
            chunk = chunk[list(required)].copy()
            chunk["_row"] = np.arange(offset, offset + len(chunk), dtype=np.int64)
            offset += len(chunk)
            if len(chunk):
                any_rows = True
            _check_values(path, chunk, required, allow_empty)
            yield chunk
    except UnicodeDecodeError:
        raise DataError(path, "not valid UTF-8", row=_first_bad_utf8_row(path), fix="re-save the file as UTF-8") from None
    except pd.errors.ParserError as exc:
        m = _LINE_RE.search(str(exc))
        row = int(m.group(1)) if m else None
        raise DataError(
            path, f"malformed CSV row ({str(exc).splitlines()[-1].strip()})", row=row,
            fix=f"each row needs exactly {len(columns)} comma-separated fields; quote values that contain commas",
        ) from None
    if not any_rows:
        raise DataError(path, "the file has a header but no data rows", fix="add data rows")


def _iter_parquet(
    path: Path, required: tuple[str, ...], chunk_rows: int, allow_empty: tuple[str, ...]
) -> Iterator[pd.DataFrame]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(path, f"not a readable Parquet file ({exc})", fix="re-write it with pandas.to_parquet") from None
    _check_columns(path, list(pf.schema_arrow.names), required)
    offset = 1
    any_rows = False
    for batch in pf.iter_batches(batch_size=chunk_rows, columns=list(required)):
        frame = batch.to_pandas()
        chunk = pd.DataFrame({c: frame[c].astype("string").astype(object) for c in required})
        for c in required:
            chunk[c] = chunk[c].where(chunk[c].notna(), None)
        chunk["_row"] = np.arange(offset, offset + len(chunk), dtype=np.int64)
        offset += len(chunk)
        if len(chunk):
            any_rows = True
        bad = chunk[[c for c in required if c not in allow_empty]].isna()
        if bad.any().any():
            col = bad.any().idxmax()
            row = int(chunk.loc[bad[col].idxmax(), "_row"])
            raise DataError(path, f"missing value in column '{col}'", row=row, fix="fill it in or delete the row")
        _check_values(path, chunk, required, allow_empty)
        yield chunk
    if not any_rows:
        raise DataError(path, "the file has no data rows", fix="add data rows")


def parse_timestamps(path: str | Path, values: pd.Series, rows: pd.Series) -> np.ndarray:
    """Integer epoch seconds from integer/float strings or ISO-8601 dates; DataError names the first bad row."""
    num = pd.to_numeric(values, errors="coerce")
    if not num.isna().any():
        return num.to_numpy(dtype=np.float64).astype(np.int64)
    dt = pd.to_datetime(values.where(num.isna()), errors="coerce", utc=True, format="ISO8601")
    bad = num.isna() & dt.isna()
    if bad.any():
        i = bad.to_numpy().argmax()
        raise DataError(
            path,
            f"timestamp {values.iloc[i]!r} is neither a number nor an ISO-8601 date",
            row=int(rows.iloc[i]),
            fix="use epoch seconds or e.g. 2024-05-01T12:30:00",
        )
    secs = dt.astype("int64") // 10**9
    out = num.copy()
    out[num.isna()] = secs[num.isna()]
    return out.to_numpy(dtype=np.float64).astype(np.int64)


def natural_sorted(values) -> list[str]:
    """Sort strings numerically when all are integers, else by code point (deterministic)."""
    values = [str(v) for v in values]
    if values and all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return sorted(values)
