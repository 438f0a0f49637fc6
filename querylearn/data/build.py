"""Build the on-disk dataset from a query log, label tables and interactions.

The log is read in chunks; only each user's last ``seq_len`` queries are kept between chunks,
so peak memory is proportional to the kept sequences (plus the query-count table), not to
the raw log. Every dropped or skipped row is counted in the summary.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from querylearn.config_loader import require, write_config
from querylearn.data.dataset import Interactions, TaskArrays, write_dataset
from querylearn.data.normalize import normalize_query
from querylearn.data.readers import NS_PER_S, iter_table, natural_sorted, parse_timestamps
from querylearn.data.splits import SPLIT_MODES, permuted_split, split_sizes
from querylearn.data.tasks import DEFAULT_METRIC
from querylearn.data.vocab import PAD_ID, QueryVocab
from querylearn.errors import ConfigError, DataError
from querylearn.progress import track

DEFAULT_SEQ_LEN = 60
# sources whose own papers use shorter histories (MovieLens-100k / KMRD: the last 30 ratings)
SOURCE_SEQ_LEN = {"movielens-100k": 30, "kmrd": 30}


@dataclass
class SyntheticOptions:
    """The ``synthetic`` source's generator (``[synthetic]`` table; ``--noisy-task``)."""

    noisy_task: bool = False  # add TERACON's uninformative task TN


DEFAULT_SYNTHETIC_USERS = 2000


@dataclass
class BuildOptions:
    """The config of ``prepare`` (``--config`` TOML / ``--set key=value``), shared by every source.

    seq_len: queries kept per user; None = the source's default (:data:`SOURCE_SEQ_LEN`, else
    :data:`DEFAULT_SEQ_LEN`), filled by :meth:`for_source`; ``teracon`` keeps its files' length.
    users: synthetic: users generated (None = :data:`DEFAULT_SYNTHETIC_USERS`); files: keep the
    first N user ids of the log (None = all); movielens-100k / kmrd / teracon refuse it.
    split: ``user`` | ``example`` (parity mode, docs/data.md). exclude_last_interaction: keep each
    user's latest interaction out of the query sequences and the label tables (the interactions
    keep it), so coldstart-eval's held-out item is unseen by the representation.
    """

    seq_len: int | None = None
    users: int | None = None
    min_count: int = 1
    min_label_count: int = 1
    split: str = "user"
    seed: int = 0
    chunk_rows: int = 500_000
    exclude_last_interaction: bool = False
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)

    def __post_init__(self) -> None:
        if self.seq_len is not None:
            require(self.seq_len >= 2, "seq_len", "must be at least 2", self.seq_len)
        require(self.min_count >= 1, "min_count", "must be at least 1", self.min_count)
        require(self.min_label_count >= 1, "min_label_count", "must be at least 1", self.min_label_count)
        require(self.split in SPLIT_MODES, "split", f"must be one of {', '.join(SPLIT_MODES)}", self.split)
        require(self.chunk_rows >= 1, "chunk_rows", "must be at least 1", self.chunk_rows)

    def for_source(self, source: str) -> BuildOptions:
        """These options with ``seq_len`` (and synthetic's ``users``) filled by the source's defaults."""
        seq_len = self.seq_len or SOURCE_SEQ_LEN.get(source, DEFAULT_SEQ_LEN)
        users = DEFAULT_SYNTHETIC_USERS if self.users is None and source == "synthetic" else self.users
        return dataclasses.replace(self, seq_len=seq_len, users=users)


@dataclass
class LabelTable:
    """One task's raw labels: ``frame`` has columns user_id, label, _row (file row)."""

    name: str
    kind: str
    metric: str
    frame: pd.DataFrame | None  # None for next_query (or until ``load`` reads it)
    path: str = "<memory>"
    load: Callable[[], pd.DataFrame] | None = None  # reads the frame when its task is assembled

    def loaded(self) -> LabelTable:
        """This table with ``frame`` read (one label file in memory at a time)."""
        if self.frame is None and self.load is not None:
            return dataclasses.replace(self, frame=self.load(), load=None)
        return self


def normalised_rows(chunk: pd.DataFrame, path: str, order0: int) -> tuple[pd.DataFrame, int]:
    """A reader chunk (user_id, timestamp, query, _row) -> (rows with a non-empty normalised query:
    user_id, timestamp [int64 ns], order [order0 + position in chunk], query; number of empty ones).
    The one place a log row is parsed and normalised (both prepare engines call it)."""
    ts = parse_timestamps(path, chunk["timestamp"], chunk["_row"])
    uniq = pd.unique(chunk["query"])
    norm_map = dict(zip(uniq, map(normalize_query, uniq), strict=True))  # each distinct query once
    q = chunk["query"].map(norm_map)
    keep = (q != "").to_numpy()
    part = pd.DataFrame(
        {
            "user_id": chunk["user_id"].str.strip().to_numpy()[keep],
            "timestamp": ts[keep],
            "order": np.arange(order0, order0 + len(chunk), dtype=np.int64)[keep],
            "query": q.to_numpy()[keep],
        }
    )
    return part, int((~keep).sum())


@dataclass
class LogAccumulator:
    """Streams query-log chunks, keeping the last ``seq_len`` normalised queries per user."""

    seq_len: int
    path: str = "<memory>"
    rows_read: int = 0
    dropped_empty: int = 0
    _counts: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.int64))
    _kept: pd.DataFrame | None = None
    _order: int = 0

    def __post_init__(self) -> None:
        if self.seq_len is None:  # a library caller skipped BuildOptions.for_source (prepare() calls it)
            raise ConfigError("seq_len: not resolved; pass BuildOptions(seq_len=N) or opts.for_source(src)")

    def add(self, chunk: pd.DataFrame) -> None:
        """chunk: user_id, timestamp, query (strings) and _row."""
        self.rows_read += len(chunk)
        part, dropped = normalised_rows(chunk, self.path, self._order)
        self.dropped_empty += dropped
        self._order += len(chunk)
        vc = part["query"].value_counts()
        self._counts = vc if self._counts.empty else self._counts.add(vc, fill_value=0).astype(np.int64)
        kept = part if self._kept is None else pd.concat([self._kept, part], ignore_index=True)
        kept = kept.sort_values(["user_id", "timestamp", "order"], kind="stable")
        self._kept = kept.groupby("user_id", sort=False).tail(self.seq_len).reset_index(drop=True)

    def read_file(self, path: str | Path, chunk_rows: int) -> None:
        self.path = str(path)
        columns = ("user_id", "timestamp", "query")
        chunks = iter_table(path, columns, chunk_rows=chunk_rows, allow_empty=("query",))
        for chunk in track(chunks, f"reading {Path(path).name} ({chunk_rows:,}-row chunks)"):
            self.add(chunk)

    @property
    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self._counts.items()}

    def sequences(self, vocab: QueryVocab, seq_len: int) -> tuple[list[str], np.ndarray, int]:
        """-> user_ids, sequences [U, L] int32, n_unk_positions (see ``_sequences``)."""
        return _sequences(self.kept, vocab, seq_len)

    @property
    def kept(self) -> pd.DataFrame:
        if self._kept is None or self._kept.empty:
            raise DataError(
                self.path,
                "no usable queries (every row was empty after normalisation)",
                fix="check the 'query' column",
            )
        return self._kept


def _sequences(kept: pd.DataFrame, vocab: QueryVocab, seq_len: int) -> tuple[list[str], np.ndarray, int]:
    """-> user_ids (natural order), sequences [U, L] int32 left-padded, n_unk_positions."""
    user_ids = natural_sorted(pd.unique(kept["user_id"]))
    uindex = {u: i for i, u in enumerate(user_ids)}
    k = kept.assign(u=kept["user_id"].map(uindex)).sort_values(["u", "timestamp", "order"], kind="stable")
    qid = k["query"].map(vocab.index).fillna(1).to_numpy(dtype=np.int64)
    u = k["u"].to_numpy()
    lengths = np.bincount(u, minlength=len(user_ids))
    rank = k.groupby("u", sort=False).cumcount().to_numpy()
    col = seq_len - lengths[u] + rank
    seqs = np.zeros((len(user_ids), seq_len), dtype=np.int32)
    seqs[u, col] = qid
    return user_ids, seqs, int((qid == 1).sum())


def _label_task(
    table: LabelTable, uindex: dict[str, int], user_split: np.ndarray, opts: BuildOptions, task_no: int
) -> tuple[TaskArrays, dict]:
    f = table.frame
    stats: dict = {"rows": int(len(f))}
    f = f.assign(user_id=f["user_id"].str.strip(), label=f["label"].str.strip())
    uidx = f["user_id"].map(uindex)
    unknown = uidx.isna()
    stats["skipped_unknown_user_rows"] = int(unknown.sum())
    f = f[~unknown].assign(u=uidx[~unknown].astype(np.int64))
    dup = f.duplicated(["u", "label"])
    stats["skipped_duplicate_rows"] = int(dup.sum())
    f = f[~dup]
    if table.kind == "classify":
        multi = f.duplicated(["u"], keep=False)
        if multi.any():
            first = f[multi].iloc[1] if multi.sum() > 1 else f[multi].iloc[0]
            raise DataError(
                table.path,
                f"user '{first['user_id']}' has more than one label in a classify task",
                row=int(first["_row"]),
                fix="keep one label per user, or declare the task kind multi_target",
            )
    counts = f["label"].value_counts()
    rare = counts[counts < opts.min_label_count].index
    rare_rows = f["label"].isin(rare)
    stats["skipped_rare_label_rows"] = int(rare_rows.sum())
    f = f[~rare_rows]
    counts = f["label"].value_counts()
    once = counts[counts == 1]
    stats["labels_seen_once"] = int(len(once))
    if table.kind == "classify" and len(once):
        label = once.index[0]
        row = int(f.loc[f["label"] == label, "_row"].iloc[0])
        raise DataError(
            table.path,
            f"class {label!r} occurs only once, so it cannot be both trained and evaluated",
            row=row,
            fix="correct the label, or pass --min-label-count 2 to drop classes seen once",
        )
    if f.empty:
        raise DataError(
            table.path,
            f"task '{table.name}' has no users left (after skipping "
            f"{stats['skipped_unknown_user_rows']} rows of users without queries)",
            fix="check that its user_id values match the query log",
        )
    names = natural_sorted(counts.index)
    lindex = {n: i for i, n in enumerate(names)}
    f = f.sort_values(["u", "_row"], kind="stable")
    users = f["u"].to_numpy(dtype=np.int64)
    labels = f["label"].map(lindex).to_numpy(dtype=np.int64)
    split = user_split[users] if opts.split == "user" else permuted_split(len(users), opts.seed + task_no)
    task = TaskArrays(
        table.name,
        table.kind,
        table.metric,
        users,
        labels,
        split,
        len(names),
        names,
        [int(counts[n]) for n in names],
    )
    return task, stats


def _interactions(
    frames: pd.DataFrame | Iterable[pd.DataFrame],
    path: str,
    uindex: dict[str, int],
    item_texts: dict[str, str] | None,
) -> tuple[Interactions, dict]:
    """Interaction rows (one frame or reader chunks: user_id, item_id, timestamp, _row) -> arrays.

    Streamed: each chunk is reduced to int64 user index, time and an item code before the next is
    read, so memory is ~24 bytes per kept row plus the distinct item ids, never the raw strings.
    Rows are ordered by (user, time, file order); item ids are numbered in natural order.
    """
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    codes: dict[str, int] = {}  # item id -> first-seen code
    us, nss, cs = [], [], []
    stats = {"rows": 0, "skipped_unknown_user_rows": 0}
    for frame in frames:
        ns = parse_timestamps(path, frame["timestamp"], frame["_row"])
        uidx = frame["user_id"].str.strip().map(uindex)
        known = uidx.notna().to_numpy()
        stats["rows"] += int(len(frame))
        stats["skipped_unknown_user_rows"] += int((~known).sum())
        local, uniq = pd.factorize(frame["item_id"].str.strip().to_numpy(dtype=object)[known])
        glob = np.fromiter((codes.setdefault(str(i), len(codes)) for i in uniq), np.int64, len(uniq))
        us.append(uidx.to_numpy()[known].astype(np.int64))
        nss.append(ns[known])
        cs.append(glob[local])
    u = np.concatenate(us) if us else np.zeros(0, np.int64)
    if not len(u):
        raise DataError(
            path,
            "no interaction rows belong to users of the query log",
            fix="check that its user_id values match the query log",
        )
    ns, code = np.concatenate(nss), np.concatenate(cs)
    del us, nss, cs
    item_ids = natural_sorted(codes)  # codes keep first-seen order: ties sort as pd.unique would
    rank = np.empty(len(codes), dtype=np.int64)
    rank[[codes[i] for i in item_ids]] = np.arange(len(item_ids))
    order = np.lexsort((ns, u))  # stable: equal (user, time) keep file order
    texts = [(item_texts or {}).get(i, i) for i in item_ids]
    stats["items_without_text"] = int(sum(1 for i in item_ids if i not in (item_texts or {})))
    inter = Interactions(u[order], rank[code[order]], ns[order] // NS_PER_S, item_ids, texts)
    return inter, stats  # sorted by ns, stored in s


def assemble(
    out_dir: str | Path,
    log: LogAccumulator,  # or outofcore.DuckLogAccumulator
    tables: list[LabelTable],
    opts: BuildOptions,
    *,
    source: str,
    synthetic: bool,
    interactions: pd.DataFrame | Iterable[pd.DataFrame] | None = None,
    interactions_path: str = "<memory>",
    item_texts: dict[str, str] | None = None,
    extra: dict | None = None,
) -> dict:
    """Turn an accumulated log + label tables into a dataset directory; return the manifest."""
    vocab = QueryVocab.build(log.counts, min_count=opts.min_count)
    user_ids, seqs, unk_positions = log.sequences(vocab, opts.seq_len)
    uindex = {u: i for i, u in enumerate(user_ids)}
    user_split = permuted_split(len(user_ids), opts.seed)
    summary: dict = {
        "log_rows": log.rows_read,
        "dropped_empty_query": log.dropped_empty,
        "queries_below_min_count": sum(1 for c in log.counts.values() if c < opts.min_count),
        "rows_mapped_to_unk": int(vocab.counts[1]),
        "kept_positions_unk": unk_positions,
        "users": len(user_ids),
        "tasks": {},
    }
    tasks: list[TaskArrays] = []
    for task_no, table in enumerate(tables):
        if table.kind == "next_query":
            n_real = (seqs != PAD_ID).sum(axis=1)
            users = np.flatnonzero(n_real >= 2).astype(np.int64)
            if not len(users):
                raise DataError(
                    log.path,
                    "no user has 2 or more queries, so next_query has nothing to predict",
                    fix="provide longer query histories",
                )
            split = (
                user_split[users] if opts.split == "user" else permuted_split(len(users), opts.seed + task_no)
            )
            tasks.append(
                TaskArrays(
                    table.name,
                    "next_query",
                    table.metric,
                    users,
                    seqs[users, -1].astype(np.int64),
                    split,
                    len(vocab),
                )
            )
            summary["tasks"][table.name] = {"skipped_users_with_one_query": int(len(user_ids) - len(users))}
        else:
            task, stats = _label_task(table.loaded(), uindex, user_split, opts, task_no)
            tasks.append(task)
            summary["tasks"][table.name] = stats
    inter = None
    if interactions is not None:
        inter, istats = _interactions(interactions, interactions_path, uindex, item_texts)
        summary["interactions"] = istats
    split_info = {
        "mode": opts.split,
        "seed": opts.seed,
        "fractions": [0.8, 0.05, 0.15],
        "rule": "user: one seeded permutation of users, n_eval=floor(0.2n), n_test=floor(0.75 n_eval); "
        "example: the same per task over examples",
        "user_sizes": list(split_sizes(len(user_ids))),
    }
    manifest = write_dataset(
        out_dir,
        source=source,
        synthetic=synthetic,
        vocab=vocab,
        user_ids=user_ids,
        sequences=seqs,
        user_split=user_split,
        tasks=tasks,
        interactions=inter,
        split_info=split_info,
        summary=summary,
        extra={
            "build": {
                "seq_len": opts.seq_len,
                "min_count": opts.min_count,
                "min_label_count": opts.min_label_count,
            },
            **(extra or {}),
        },
    )
    write_config(out_dir, opts)  # the resolved options, readable again with --config
    return manifest


def frame_from_records(columns: dict[str, list | np.ndarray]) -> pd.DataFrame:
    """In-memory table -> the reader's chunk format (string columns + _row from 2)."""
    f = pd.DataFrame({k: pd.Series(v).astype(str).to_numpy(dtype=object) for k, v in columns.items()})
    f["_row"] = np.arange(2, len(f) + 2, dtype=np.int64)
    return f


def metric_for(kind: str) -> str:
    return DEFAULT_METRIC[kind]
