"""The official TERACON/CONURE task files: ``querylearn prepare teracon --path DIR``.

The format of the official loaders and of the public TTL / MovieLens releases
(docs/algorithms.md#data-protocol, #splits):

- ``t1*`` (one file): one line per user, comma-separated integer item ids, left-padded with ``0``
  (``0`` = padding). Task T1 is next-item prediction over the sequence.
- ``tK*`` (K >= 2, one file each): ``<item sequence>,,<target>[,<target>...]``: a user's sequence in the
  same item ids, then ``,,``, then one or more integer targets. Each (line, target) pair is one example.

Task files are found by name: ``t<K>`` optionally followed by ``_``, ``-`` or ``.`` and anything
(``t1_seq.csv``, ``t2.txt``, ``t3``); the numbers give the task order and must run 1, 2, ... without
gaps. An optional ``users.csv`` (not part of the official format) names the users: one id per line, in
``t1``'s line order; without it the users are ``t1``'s line numbers.

How the files become a querylearn dataset:

- Vocabulary: ``<pad>``, ``<unk>``, then ``t1``'s item ids in increasing numeric order (the official
  item index's order); items seen fewer than ``--min-count`` times in ``t1`` map to ``<unk>``.
- Users: ``t1``'s lines, in order. The official code never links users across files; here a ``tK`` line
  belongs to the ``t1`` user with the identical sequence (padding aside). When several ``t1`` lines share
  a sequence, the k-th such ``tK`` line goes to the k-th of them (the last one takes any excess). A ``tK``
  sequence found in no ``t1`` line becomes an extra user (id ``FILE:ROW``) who has no T1 example.
- Kinds: T1 is ``next_query`` over the item tokens. A ``tK`` task is ``classify`` (metric accuracy)
  when every user has exactly one target and there are at most 20 distinct targets (the official
  evaluator's rule: more than ``top_k + 15 = 20`` targets means an item-ranking task); otherwise
  ``multi_target`` (metric MRR@5).
- ``--split example`` reproduces the official scripts' split exactly: ``numpy.random.seed(seed)`` then
  ``numpy.random.permutation`` over each task's examples in file order (T1: every ``t1`` line; Tk: every
  (line, target) pair), 80/5/15 with the sizes of :func:`querylearn.data.splits.split_sizes`.
  ``--split user`` (default) is querylearn's user-level split shared by every task.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from querylearn.data.build import BuildOptions
from querylearn.data.dataset import TaskArrays, write_dataset
from querylearn.data.readers import natural_sorted
from querylearn.data.splits import TEST, TRAIN, VALID, permuted_split, split_sizes
from querylearn.data.tasks import DEFAULT_METRIC
from querylearn.data.vocab import PAD, PAD_ID, UNK, UNK_ID, QueryVocab
from querylearn.errors import DataError, QuerylearnError

TASK_FILE = re.compile(r"t(\d+)(?:[._\-].*)?", re.IGNORECASE)
USERS_FILE = "users.csv"
# the official evaluator ranks when a task has more than top_k + 15 = 20 targets (#metrics; B24, #b24)
MAX_CLASSIFY_LABELS = 20
_UINT = re.compile(r"\s*\d+\s*")
_INT = re.compile(r"\s*-?\d+\s*")


@dataclass(frozen=True)
class TaskFile:
    """One task file: ``number`` K of ``tK`` and its path; the task is named ``T{K}``."""

    number: int
    path: Path

    @property
    def name(self) -> str:
        return f"T{self.number}"


@dataclass
class TaskLines:
    """A parsed task file. ``items[i]``: line i's items without the left padding (int64, raw ids);
    ``targets[i]``: its targets (empty for ``t1``); ``widths[i]``: its number of fields before ``,,``."""

    path: Path
    items: list[np.ndarray]
    targets: list[list[int]]
    widths: list[int]


def find_task_files(folder: str | Path) -> list[TaskFile]:
    """The ``tK`` files of ``folder`` ordered by K (t1 first, no gaps, one file per K)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found", fix="pass --path to the folder holding t1..., t2..., ...")
    found: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        m = TASK_FILE.fullmatch(p.name)
        if not m or not p.is_file():
            continue
        k = int(m.group(1))
        if k == 0:
            raise DataError(
                p, "task files are numbered from t1", fix="rename it t1... (the sequence file) or t2, t3, ..."
            )
        if k in found:
            raise DataError(
                p,
                f"a second file for task t{k} (the other is {found[k].name})",
                fix="keep one t<K> file per task in the folder",
            )
        found[k] = p
    if 1 not in found:
        raise DataError(
            folder,
            "no t1 sequence file (e.g. t1_seq.csv)",
            fix="name the sequence file t1..., and the task files t2..., t3..., in task order",
        )
    numbers = sorted(found)
    missing = [k for k in range(1, numbers[-1] + 1) if k not in found]
    if missing:
        raise DataError(
            folder,
            f"no file for task t{missing[0]} (found {', '.join(found[k].name for k in numbers)})",
            fix="number the task files t1, t2, ... without gaps",
        )
    return [TaskFile(k, found[k]) for k in numbers]


def _bad_field(
    path: Path, row: int, fields: list[str], pattern: re.Pattern, what: str, fix: str
) -> DataError:
    k = next(i for i, f in enumerate(fields) if not pattern.fullmatch(f))
    return DataError(
        path,
        f"{what} {k + 1} is {fields[k]!r}, "
        f"not {'an integer' if pattern is _INT else 'a non-negative integer'}",
        row=row,
        fix=fix,
    )


def _parse_items(path: Path, row: int, text: str) -> tuple[np.ndarray, int]:
    """``"0,0,5,7"`` -> (items after the left padding [n] int64, number of fields)."""
    fields = text.split(",")
    if not all(_UINT.fullmatch(f) for f in fields):
        raise _bad_field(
            path, row, fields, _UINT, "item", "item ids are integers >= 0, separated by single commas"
        )
    ids = np.array([int(f) for f in fields], dtype=np.int64)
    nz = np.flatnonzero(ids)
    start = int(nz[0]) if len(nz) else len(ids)
    if (ids[start:] == PAD_ID).any():
        pos = start + int(np.flatnonzero(ids[start:] == PAD_ID)[0]) + 1
        raise DataError(
            path,
            f"padding 0 at item {pos} comes after an item (sequences are left-padded with 0)",
            row=row,
            fix="put every 0 before the first item, or remove it",
        )
    return ids[start:], len(ids)


def read_task_lines(path: Path, *, with_targets: bool) -> TaskLines:
    """Parse a ``t1`` file (``with_targets=False``) or a ``tK`` file; one DataError per malformed line."""
    items: list[np.ndarray] = []
    targets: list[list[int]] = []
    widths: list[int] = []
    with open(path, "rb") as fh:
        for row, raw in enumerate(fh, 1):
            if row == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line.strip():
                raise DataError(path, "empty line", row=row, fix="delete it: every line is one user")
            if with_targets:
                parts = line.split(",,")
                if len(parts) != 2:
                    what = (
                        "no ',,' between the sequence and the targets"
                        if len(parts) < 2
                        else "more than one ',,'"
                    )
                    raise DataError(
                        path, what, row=row, fix="write each line as ITEM,ITEM,...,,TARGET[,TARGET...]"
                    )
                seq, tgt = parts
                fields = tgt.split(",")
                if not tgt.strip():
                    raise DataError(
                        path, "no target after ',,'", row=row, fix="give the line one or more targets"
                    )
                if not all(_INT.fullmatch(f) for f in fields):
                    raise _bad_field(
                        path, row, fields, _INT, "target", "targets are integers separated by single commas"
                    )
                targets.append([int(f) for f in fields])
            else:
                if ",," in line:
                    raise DataError(
                        path,
                        "',,' in the t1 sequence file (t1 holds sequences only)",
                        row=row,
                        fix="put targets in the t2, t3, ... files; t1 lines are ITEM,ITEM,...",
                    )
                seq = line
                targets.append([])
            ids, width = _parse_items(path, row, seq)
            items.append(ids)
            widths.append(width)
    if not items:
        raise DataError(path, "the file is empty", fix="one line per user: ITEM,ITEM,...")
    return TaskLines(path, items, targets, widths)


def official_split(n: int, seed: int) -> np.ndarray:
    """Split codes [n] int8 of the official scripts (#splits): ``np.random.seed(seed)``, then
    ``np.random.permutation(n)``; train = the first n - n_eval permuted rows, valid = the next
    n_eval - n_test, test = the last n_test (sizes of :func:`split_sizes`, which fix bug B32,
    docs/algorithms.md#b32)."""
    n_train, n_valid, _ = split_sizes(n)
    order = np.random.RandomState(seed).permutation(n)
    codes = np.empty(n, dtype=np.int8)
    codes[order[:n_train]] = TRAIN
    codes[order[n_train : n_train + n_valid]] = VALID
    codes[order[n_train + n_valid :]] = TEST
    return codes


@dataclass
class _Users:
    """The dataset's users: ``t1``'s lines, then the sequences seen only in task files."""

    ids: list[str]
    items: list[np.ndarray]
    _by_seq: dict[bytes, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for u, it in enumerate(self.items):
            self._by_seq.setdefault(it.tobytes(), []).append(u)

    def match(self, items: np.ndarray, seen: Counter, new_id: str) -> tuple[int, bool]:
        """-> (user index, whether a new user was added). ``seen`` counts this file's lines per sequence."""
        key = items.tobytes()
        owners = self._by_seq.get(key)
        new = owners is None
        if new:
            owners = self._by_seq[key] = [len(self.ids)]
            self.ids.append(new_id)
            self.items.append(items)
        u = owners[min(seen[key], len(owners) - 1)]
        seen[key] += 1
        return u, new


def _user_ids(folder: Path, n_lines: int) -> tuple[list[str], str]:
    path = folder / USERS_FILE
    if not path.is_file():
        return [str(i) for i in range(1, n_lines + 1)], "t1 line numbers"
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if len(ids) != n_lines:
        raise DataError(
            path,
            f"{len(ids)} lines but the t1 file has {n_lines}",
            fix="one user id per t1 line, in the same order (or remove users.csv)",
        )
    seen: dict[str, int] = {}
    for row, uid in enumerate(ids, 1):
        if not uid:
            raise DataError(path, "empty user id", row=row, fix="one user id per line")
        if uid in seen:
            raise DataError(
                path,
                f"user id {uid!r} appears twice (first at row {seen[uid]})",
                row=row,
                fix="user ids must be unique",
            )
        seen[uid] = row
    return ids, USERS_FILE


def _item_vocab(t1: TaskLines, min_count: int) -> tuple[QueryVocab, np.ndarray]:
    """-> (vocabulary, the kept raw item ids sorted [K]; vocabulary id of kept[i] is i + 2)."""
    all_items = np.concatenate(t1.items) if t1.items else np.zeros(0, np.int64)
    if not len(all_items):
        raise DataError(t1.path, "no items (every line is padding only)", fix="check the t1 file")
    values, counts = np.unique(all_items, return_counts=True)
    keep = counts >= min_count
    vocab = QueryVocab(
        [PAD, UNK] + [str(v) for v in values[keep]],
        [0, int(counts[~keep].sum())] + [int(c) for c in counts[keep]],
        min_count,
    )
    return vocab, values[keep]


def _to_vocab_ids(items: np.ndarray, kept: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(kept, items)
    found = (pos < len(kept)) & (kept[np.minimum(pos, len(kept) - 1)] == items)
    return np.where(found, pos + 2, UNK_ID).astype(np.int64)


def _label_task(
    tf: TaskFile, lines: TaskLines, users: list[int], opts: BuildOptions, user_split: np.ndarray
) -> tuple[TaskArrays, dict]:
    """One ``tK`` file's examples -> TaskArrays (kind inferred) and its summary counts."""
    n_targets = np.array([len(t) for t in lines.targets])
    ex = pd.DataFrame(
        {
            "u": np.repeat(np.asarray(users, dtype=np.int64), n_targets),
            "label": [str(t) for ts in lines.targets for t in ts],
            "_row": np.repeat(np.arange(1, len(users) + 1), n_targets),
            "ord": np.arange(int(n_targets.sum())),  # the official example order
        }
    )
    stats: dict = {"file": lines.path.name, "lines": len(users), "targets": len(ex)}
    dup = ex.duplicated(["u", "label"])
    stats["skipped_duplicate_rows"] = int(dup.sum())
    ex = ex[~dup]
    counts = ex["label"].value_counts()
    rare = ex["label"].map(counts) < opts.min_label_count
    stats["skipped_rare_label_rows"] = int(rare.sum())
    ex = ex[~rare]
    if ex.empty:
        raise DataError(
            lines.path,
            f"task {tf.name} has no examples left after skipping the labels seen fewer "
            f"than {opts.min_label_count} times",
            fix="lower --min-label-count",
        )
    counts = ex["label"].value_counts()
    stats["labels_seen_once"] = int((counts == 1).sum())
    one_each = not ex["u"].duplicated().any()
    kind = "classify" if one_each and len(counts) <= MAX_CLASSIFY_LABELS else "multi_target"
    if kind == "classify" and (counts == 1).any():
        label = counts[counts == 1].index[0]
        raise DataError(
            lines.path,
            f"class {label!r} of task {tf.name} occurs only once, so it cannot be both trained and evaluated",
            row=int(ex.loc[ex["label"] == label, "_row"].iloc[0]),
            fix="correct the label, or pass --min-label-count 2 to drop classes seen once",
        )
    names = natural_sorted(counts.index)
    lindex = {n: i for i, n in enumerate(names)}
    ex = ex.sort_values(["u", "ord"], kind="stable")
    u = ex["u"].to_numpy(np.int64)
    split = (
        user_split[u]
        if opts.split == "user"
        else official_split(stats["targets"], opts.seed)[ex["ord"].to_numpy()]
    )
    task = TaskArrays(
        tf.name,
        kind,
        DEFAULT_METRIC[kind],
        u,
        ex["label"].map(lindex).to_numpy(np.int64),
        split,
        len(names),
        names,
        [int(counts[n]) for n in names],
    )
    return task, stats


def prepare_teracon(
    out: str | Path, *, path: str | Path, opts: BuildOptions, seq_len_from_files: bool = True
) -> dict:
    """Build a dataset from the official task files in ``path``; returns the manifest.

    ``seq_len_from_files``: keep the width of ``t1``'s lines as the sequence length (``opts.seq_len``
    is then unused); otherwise keep each user's last ``opts.seq_len`` items.
    """
    if opts.exclude_last_interaction:
        raise QuerylearnError(
            "--exclude-last-interaction is for movielens-100k and kmrd; "
            "the teracon task files have no interactions"
        )
    folder = Path(path)
    files = find_task_files(folder)
    t1 = read_task_lines(files[0].path, with_targets=False)
    ids, id_source = _user_ids(folder, len(t1.items))
    width = max(t1.widths)
    seq_len = width if seq_len_from_files else opts.seq_len
    if seq_len < 2:
        raise DataError(
            t1.path,
            f"sequences of {seq_len} item(s) leave nothing to predict",
            fix="pass --seq-len 2 or more",
        )
    vocab, kept = _item_vocab(t1, opts.min_count)
    users = _Users(ids, list(t1.items))
    n_t1 = len(t1.items)
    summary: dict = {"log_rows": n_t1, "dropped_empty_query": 0, "rows_mapped_to_unk": int(vocab.counts[1])}
    task_stats: dict[str, dict] = {}
    matched: list[tuple[TaskFile, TaskLines, list[int]]] = []
    for tf in files[1:]:
        lines = read_task_lines(tf.path, with_targets=True)
        seen: Counter = Counter()
        owner, extra = [], 0
        for row, items in enumerate(lines.items, 1):
            u, new = users.match(items, seen, f"{tf.path.name}:{row}")
            owner.append(u)
            extra += new
        matched.append((tf, lines, owner))
        task_stats[tf.name] = {"lines_not_in_t1": extra}

    # sequences [U, seq_len]: each user's last seq_len items (vocabulary ids), left-padded
    n_users = len(users.ids)
    seqs = np.zeros((n_users, seq_len), dtype=np.int32)
    truncated = 0
    for u, items in enumerate(users.items):
        v = _to_vocab_ids(items[-seq_len:], kept) if len(items) else items
        truncated += len(items) > seq_len
        if len(v):
            seqs[u, seq_len - len(v) :] = v
    summary.update(
        {
            "kept_positions_unk": int((seqs == UNK_ID).sum()),
            "users": n_users,
            "users_only_in_task_files": n_users - n_t1,
            "users_truncated_to_seq_len": int(truncated),
        }
    )
    user_split = permuted_split(n_users, opts.seed)

    # T1: next item over t1's users with 2+ items; the label is the last item
    n_real = (seqs[:n_t1] != PAD_ID).sum(axis=1)
    t1_users = np.flatnonzero(n_real >= 2).astype(np.int64)
    if not len(t1_users):
        raise DataError(
            t1.path, "no line has 2 or more items, so T1 has nothing to predict", fix="check the t1 file"
        )
    t1_split = user_split[t1_users] if opts.split == "user" else official_split(n_t1, opts.seed)[t1_users]
    tasks = [
        TaskArrays(
            files[0].name,
            "next_query",
            DEFAULT_METRIC["next_query"],
            t1_users,
            seqs[t1_users, -1].astype(np.int64),
            t1_split,
            len(vocab),
        )
    ]
    summary["tasks"] = {
        files[0].name: {
            "file": t1.path.name,
            "lines": n_t1,
            "skipped_users_with_one_query": int(n_t1 - len(t1_users)),
        }
    }
    for tf, lines, owner in matched:
        task, stats = _label_task(tf, lines, owner, opts, user_split)
        tasks.append(task)
        summary["tasks"][tf.name] = {**stats, **task_stats[tf.name]}

    split_info = {
        "mode": opts.split,
        "seed": opts.seed,
        "fractions": [0.8, 0.05, 0.15],
        "rule": "user: one seeded permutation of users, n_eval=floor(0.2n), n_test=floor(0.75 n_eval); "
        "example: the official scripts' split, numpy.random.RandomState(seed).permutation over each task's "
        "examples in file order (T1: every t1 line; Tk: every (line, target) pair), same sizes",
        "user_sizes": list(split_sizes(n_users)),
    }
    return write_dataset(
        out,
        source="teracon",
        synthetic=False,
        vocab=vocab,
        user_ids=users.ids,
        sequences=seqs,
        user_split=user_split,
        tasks=tasks,
        split_info=split_info,
        summary=summary,
        extra={
            "build": {
                "seq_len": seq_len,
                "min_count": opts.min_count,
                "min_label_count": opts.min_label_count,
            },
            "inputs": {
                "path": str(folder),
                "files": {tf.name: tf.path.name for tf in files},
                "user_ids": id_source,
            },
            "teracon": {
                "seq_len_in_files": width,
                "kind_rule": f"classify when every user has one target and at most "
                f"{MAX_CLASSIFY_LABELS} distinct targets, else multi_target",
            },
        },
    )
