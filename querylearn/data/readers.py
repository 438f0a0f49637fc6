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
        raise DataError(
            path,
            "the file is empty",
            fix=f"write a header row with columns {', '.join(required)} and data rows",
        )
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


def _check_values(
    path: Path, chunk: pd.DataFrame, required: tuple[str, ...], allow_empty: tuple[str, ...]
) -> None:
    for col in required:
        if col in allow_empty:
            chunk[col] = chunk[col].fillna("")
            continue
        values = chunk[col]
        bad = values.isna() | (values.str.strip() == "")
        if bad.any():
            row = int(chunk.loc[bad.idxmax(), "_row"])
            raise DataError(
                path, f"empty value in column '{col}'", row=row, fix="fill it in or delete the row"
            )


_LINE_RE = re.compile(r"line (\d+)")


def _iter_csv(
    path: Path, required: tuple[str, ...], chunk_rows: int, sep: str, allow_empty: tuple[str, ...]
) -> Iterator[pd.DataFrame]:
    try:
        header = pd.read_csv(path, nrows=0, sep=sep, encoding="utf-8", lineterminator="\n")
    except UnicodeDecodeError:
        raise DataError(
            path, "not valid UTF-8", row=_first_bad_utf8_row(path), fix="re-save the file as UTF-8"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(
            path, "the file is empty", fix=f"write a header row with columns {', '.join(required)}"
        ) from None
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
            # rows end at \n (a \r before it is stripped with the value); a bare \r inside a value, which
            # pandas' own to_csv leaves unquoted, stays part of the value instead of splitting the row
            lineterminator="\n",
        )
        any_rows = False
        for chunk in reader:
            chunk.columns = columns
            # CRLF files: the \r of each line ends up on the last field
            chunk[columns[-1]] = chunk[columns[-1]].str.removesuffix("\r")
            chunk = chunk[list(required)].copy()
            chunk["_row"] = np.arange(offset, offset + len(chunk), dtype=np.int64)
            offset += len(chunk)
            if len(chunk):
                any_rows = True
            _check_values(path, chunk, required, allow_empty)
            yield chunk
    except UnicodeDecodeError:
        raise DataError(
            path, "not valid UTF-8", row=_first_bad_utf8_row(path), fix="re-save the file as UTF-8"
        ) from None
    except pd.errors.ParserError as exc:
        m = _LINE_RE.search(str(exc))
        row = int(m.group(1)) if m else None
        raise DataError(
            path,
            f"malformed CSV row ({str(exc).splitlines()[-1].strip()})",
            row=row,
            fix=(
                f"each row needs exactly {len(columns)} comma-separated fields; "
                "quote values that contain commas"
            ),
        ) from None
    if not any_rows:
        raise DataError(path, "the file has a header but no data rows", fix="add data rows")


def _iter_parquet(
    path: Path, required: tuple[str, ...], chunk_rows: int, allow_empty: tuple[str, ...]
) -> Iterator[pd.DataFrame]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for corrupt files
        raise DataError(
            path, f"not a readable Parquet file ({exc})", fix="re-write it with pandas.to_parquet"
        ) from None
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
            raise DataError(
                path, f"missing value in column '{col}'", row=row, fix="fill it in or delete the row"
            )
        _check_values(path, chunk, required, allow_empty)
        yield chunk
    if not any_rows:
        raise DataError(path, "the file has no data rows", fix="add data rows")


NS_PER_S = 10**9
# int64 nanoseconds since the epoch cover 1677-09-21 .. 2262-04-11; epoch seconds outside it are rejected
_MAX_S = (2**63 - 1) // NS_PER_S
_INT_RE = r"[+-]?\d+"
_DEC_RE = r"[+-]?(?:\d+\.\d*|\.\d+)"
_TS_FIX = (
    "use epoch seconds (fractions allowed) or ISO-8601 such as 2024-05-01T12:30:00 "
    "or 2024-05-01T12:30:00+09:00"
)


def _bad_timestamp(path, values: pd.Series, rows: pd.Series, mask: np.ndarray, why: str) -> DataError:
    i = int(np.flatnonzero(mask)[0])
    return DataError(path, f"timestamp {values.iloc[i]!r} {why}", row=int(rows.iloc[i]), fix=_TS_FIX)


def parse_timestamps(path: str | Path, values: pd.Series, rows: pd.Series) -> np.ndarray:
    """Timestamps -> int64 nanoseconds since 1970-01-01 UTC (a sort key keeping sub-second order).

    Each value may be, independently of the others in the column: integer epoch seconds, decimal
    epoch seconds (the fraction is kept exactly to the nanosecond), a number in exponent form, or an
    ISO-8601 date/time (``T`` or space separator; a ``Z`` or ``+09:00`` offset is converted to UTC, a
    value without one is read as UTC). Native Parquet timestamp columns arrive here as their ISO text.
    Non-finite values (``inf``, ``nan``), values outside 1677..2262 (e.g. epoch milliseconds) and
    anything else raise a :class:`DataError` naming the first bad row. Use ``ns // NS_PER_S`` for seconds.
    """
    text = values.astype(str).str.strip()
    n = len(text)
    out = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    # 1. integer epoch seconds (the common case, exact)
    is_int = text.str.fullmatch(_INT_RE).to_numpy(dtype=bool)
    if is_int.any():
        ints = text[is_int]
        too_long = ints.str.lstrip("+-").str.lstrip("0").str.len().to_numpy() > 11
        secs = np.zeros(len(ints), dtype=np.int64)
        secs[~too_long] = ints[~too_long].astype(np.int64).to_numpy()
        bad = too_long | (np.abs(secs) > _MAX_S)
        if bad.any():
            raise _bad_timestamp(
                path,
                values[is_int],
                rows[is_int],
                bad,
                "is out of range for epoch seconds (1677..2262; milliseconds?)",
            )
        out[is_int] = secs * NS_PER_S
        done |= is_int
    # 2. decimal epoch seconds: integer part and fraction parsed separately, so no float rounding
    is_dec = ~done & text.str.fullmatch(_DEC_RE).to_numpy(dtype=bool)
    if is_dec.any():
        dec = text[is_dec]
        neg = dec.str.startswith("-").to_numpy()
        body = dec.str.lstrip("+-")
        parts = body.str.split(".", n=1, expand=True)
        whole_txt = parts[0].str.lstrip("0")
        frac_txt = parts[1].fillna("")
        bad = (whole_txt.str.len().to_numpy() > 11) | (frac_txt.str.len().to_numpy() > 9) & (
            frac_txt.str[9:].str.strip("0").str.len().to_numpy() > 0
        )
        if bad.any():
            raise _bad_timestamp(
                path, values[is_dec], rows[is_dec], bad, "is out of range, or finer than a nanosecond"
            )
        whole = whole_txt.where(whole_txt != "", "0").astype(np.int64).to_numpy()
        if (whole >= _MAX_S).any():  # checked before multiplying: int64 would wrap silently
            raise _bad_timestamp(
                path,
                values[is_dec],
                rows[is_dec],
                whole >= _MAX_S,
                "is out of range for epoch seconds (1677..2262; milliseconds?)",
            )
        frac = frac_txt.str[:9].str.ljust(9, "0").astype(np.int64).to_numpy()
        ns_abs = whole * NS_PER_S + frac
        out[is_dec] = np.where(neg, -ns_abs, ns_abs)
        done |= is_dec
    rest = ~done
    if rest.any():
        # 3. other numbers (exponent form, inf, nan)
        num = pd.to_numeric(text[rest], errors="coerce").to_numpy(dtype=np.float64)
        is_num = ~np.isnan(num) | text[rest].str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
        if is_num.any():
            vals = num[is_num]
            bad = ~np.isfinite(vals)
            if bad.any():
                raise _bad_timestamp(
                    path, values[rest][is_num], rows[rest][is_num], bad, "is not a finite number"
                )
            bad = np.abs(vals) >= _MAX_S
            if bad.any():
                raise _bad_timestamp(
                    path,
                    values[rest][is_num],
                    rows[rest][is_num],
                    bad,
                    "is out of range for epoch seconds (1677..2262; milliseconds?)",
                )
            idx = np.flatnonzero(rest)[is_num]
            out[idx] = np.round(vals * NS_PER_S).astype(np.int64)
            done[idx] = True
    rest = ~done
    if rest.any():
        # 4. ISO-8601 dates and times, each value on its own (mixed offsets are fine), to UTC
        iso = text[rest]
        dt = pd.to_datetime(iso, errors="coerce", utc=True, format="ISO8601")
        bad = dt.isna().to_numpy()
        if bad.any():
            raise _bad_timestamp(
                path, values[rest], rows[rest], bad, "is neither a number nor an ISO-8601 date"
            )
        lo, hi = pd.Timestamp.min.tz_localize("UTC"), pd.Timestamp.max.tz_localize("UTC")
        bad = ((dt < lo) | (dt > hi)).to_numpy()
        if bad.any():
            raise _bad_timestamp(path, values[rest], rows[rest], bad, "is outside 1677..2262")
        out[rest] = dt.dt.tz_convert(None).dt.as_unit("ns").astype("int64").to_numpy()
    return out


def natural_sorted(values) -> list[str]:
    """Sort strings numerically when all are integers, else by code point (deterministic)."""
    values = [str(v) for v in values]
    if values and all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return sorted(values)
