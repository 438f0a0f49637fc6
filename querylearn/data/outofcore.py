"""Out-of-core preparation: many input files, and a query log larger than memory (DuckDB).

Two pieces, both used by ``prepare files``:

* :func:`expand_inputs` turns ``--queries`` into an ordered list of files: one file, a folder (a
  partitioned Parquet/CSV folder such as ``log/dt=2024-05-01/part-0.parquet``, read recursively in path
  order) or a glob (``'log/*.parquet'``, ``'log/**/*.csv'``). The files are read one after another, so the
  file order is the row order that breaks timestamp ties, exactly as the rows of one concatenated file.
* :class:`DuckLogAccumulator` is the ``--engine duckdb`` twin of
  :class:`querylearn.data.build.LogAccumulator`. Rows are still read, validated, timestamp-parsed and
  normalised chunk by chunk by the same Python code (:func:`querylearn.data.build.normalised_rows`, so
  the ``querylearn.nfc-v1`` rule, the timestamp rules and every error message are the pandas engine's),
  then appended to a DuckDB database file in a temporary folder. The heavy relational work runs there,
  bounded by ``memory_limit`` (DuckDB spills to the same folder): query counts (``GROUP BY``), each
  user's last ``seq_len`` queries by (time, row order) (a ``row_number()`` window) joined with the
  vocabulary and user index, streamed in batches into the ``[n_users, seq_len]`` int32 matrix. Peak
  Python memory is one chunk, the query-count table, the user-id list and the output matrix.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from querylearn.data.readers import iter_table, natural_sorted
from querylearn.data.vocab import QueryVocab
from querylearn.errors import DataError, QuerylearnError

TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
ENGINES = ("auto", "pandas", "duckdb")
# auto: DuckDB once the query files reach this size on disk (below it the in-memory engine is faster)
AUTO_DUCKDB_BYTES = 512 * 2**20
_GLOB_CHARS = set("*?[")


def expand_inputs(spec: str | Path) -> list[Path]:
    """A file, a folder (every ``.parquet``/``.pq``/``.csv`` below it) or a glob -> files in path order.

    Hidden files and folders (``.``/``_`` prefixes, e.g. ``_SUCCESS``, ``.crc``) are skipped.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [
            p for p in path.rglob("*")
            if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        ]
        if not files:
            raise DataError(path, "the folder holds no .parquet, .pq or .csv files",
                            fix="point --queries at a file, a folder of Parquet/CSV parts or a glob")
        return sorted(files, key=lambda p: p.relative_to(path).parts)
    if _GLOB_CHARS & set(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(text, "no file matches the pattern",
                            fix="check the pattern (quote it in the shell)")
        return files
    return [path]  # the reader reports the missing file


def iter_chunks(
    paths: list[Path], required: tuple[str, ...], *, chunk_rows: int, allow_empty: tuple[str, ...] = ()
) -> Iterator[tuple[Path, pd.DataFrame]]:
    """(file, chunk) for every chunk of every file in order; ``_row`` counts within each file."""
    for path in paths:
        for chunk in iter_table(path, required, chunk_rows=chunk_rows, allow_empty=allow_empty):
            yield path, chunk


def choose_engine(engine: str, paths: list[Path], memory_limit: str | None) -> str:
    """``auto`` -> ``duckdb`` when ``--memory-limit`` is given or the files reach AUTO_DUCKDB_BYTES."""
    if engine not in ENGINES:
        raise QuerylearnError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "pandas" and memory_limit is not None:
        raise QuerylearnError("--memory-limit bounds the duckdb engine; pass --engine duckdb (or auto)")
    if engine != "auto":
        return engine
    if memory_limit is not None:
        return "duckdb"
    size = sum(p.stat().st_size for p in paths if p.is_file())
    return "duckdb" if size >= AUTO_DUCKDB_BYTES else "pandas"


class DuckLogAccumulator:
    """The query log in an on-disk DuckDB table; same interface as ``LogAccumulator``.

    Use as a context manager (the temporary folder with the database and spill files is removed on
    exit). ``memory_limit`` is DuckDB's (e.g. ``"2GB"``); ``None`` keeps DuckDB's default (80% of RAM).
    """

    def __init__(self, seq_len: int, path: str = "<memory>", *, memory_limit: str | None = None,
                 tmp_dir: str | Path | None = None, threads: int | None = None):
        import duckdb

        limit = None if memory_limit is None else _checked_limit(memory_limit)  # before any file exists
        self.seq_len = seq_len
        self.path = path
        self.rows_read = 0
        self.dropped_empty = 0
        self._order = 0
        self._dir = tempfile.mkdtemp(prefix="querylearn-prepare-", dir=tmp_dir)
        self._con = duckdb.connect(os.path.join(self._dir, "log.duckdb"))
        try:
            if memory_limit is not None:
                self._con.execute(f"SET memory_limit = '{limit}'")
            self._con.execute(f"SET temp_directory = '{os.path.join(self._dir, 'spill')}'")
            self._con.execute("SET preserve_insertion_order = false")
            if threads is not None:
                self._con.execute(f"SET threads = {int(threads)}")
        except duckdb.Error as exc:
            self.close()
            raise QuerylearnError(f"--memory-limit {memory_limit!r}: {str(exc).splitlines()[0]}") from None
        self._con.execute("CREATE TABLE log (user_id VARCHAR, ts BIGINT, ord BIGINT, query VARCHAR)")
        self._counts: dict[str, int] | None = None

    def __enter__(self) -> DuckLogAccumulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def add(self, chunk: pd.DataFrame) -> None:
        """chunk: user_id, timestamp, query (strings) and _row (the reader's format)."""
        from querylearn.data.build import normalised_rows

        self.rows_read += len(chunk)
        part, dropped = normalised_rows(chunk, self.path, self._order)
        self._order += len(chunk)
        self.dropped_empty += dropped
        if len(part):
            frame = pd.DataFrame({"user_id": part["user_id"], "ts": part["timestamp"], "ord": part["order"],
                                  "query": part["query"]})
            self._con.register("_chunk", frame)
            self._con.execute("INSERT INTO log SELECT user_id, ts, ord, query FROM _chunk")
            self._con.unregister("_chunk")
        self._counts = None

    @property
    def counts(self) -> dict[str, int]:
        """Normalised query -> number of rows (every row, before the last-L cut)."""
        if self._counts is None:
            res = self._con.execute("SELECT query, count(*) AS n FROM log GROUP BY query").fetchnumpy()
            self._counts = dict(zip(map(str, res["query"]), map(int, res["n"]), strict=True))
        return self._counts

    def sequences(self, vocab: QueryVocab, seq_len: int) -> tuple[list[str], np.ndarray, int]:
        """-> user_ids (natural order), sequences [U, L] int32 left-padded, n_unk_positions.

        Equal to ``build._sequences`` on the same rows: the kept queries are each user's last
        ``seq_len`` by (timestamp, row order); the newest sits in column L-1.
        """
        users = self._con.execute("SELECT DISTINCT user_id FROM log").fetchnumpy()["user_id"]
        if not len(users):
            raise DataError(self.path, "no usable queries (every row was empty after normalisation)",
                            fix="check the 'query' column")
        user_ids = natural_sorted(users)
        self._con.register("_users", pd.DataFrame({"user_id": user_ids, "u": np.arange(len(user_ids))}))
        self._con.register("_vocab", pd.DataFrame({"query": vocab.queries, "qid": np.arange(len(vocab))}))
        seqs = np.zeros((len(user_ids), seq_len), dtype=np.int32)
        unk = 0
        rel = self._con.sql(
            f"""
            SELECT u.u AS u, k.col AS col, coalesce(v.qid, 1) AS qid
            FROM (SELECT user_id, query,
                         {int(seq_len)} - row_number()
                             OVER (PARTITION BY user_id ORDER BY ts DESC, ord DESC) AS col
                  FROM log QUALIFY col >= 0) AS k
            JOIN _users AS u USING (user_id) LEFT JOIN _vocab AS v USING (query)
            """
        )
        # Arrow batches of 1M rows (duckdb >= 1.4 names it to_arrow_reader, earlier fetch_arrow_reader)
        reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
        for batch in reader(1_000_000):
            u = batch.column("u").to_numpy()
            col = batch.column("col").to_numpy()
            qid = batch.column("qid").to_numpy()
            seqs[u, col] = qid
            unk += int((qid == 1).sum())
        self._con.unregister("_users")
        self._con.unregister("_vocab")
        return user_ids, seqs, unk


def _checked_limit(text: str) -> str:
    import re

    if not re.fullmatch(r"\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*", text, flags=re.IGNORECASE):
        raise QuerylearnError(f"--memory-limit {text!r} is not a size; use e.g. 512MB, 4GB or 4GiB")
    return text.strip()
