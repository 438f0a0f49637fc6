"""The on-disk dataset: the contract every later stage reads.

Layout of a dataset directory::

    dataset.json      manifest (kind "dataset", schema_version 1): source, synthetic, seq_len,
                      n_users, vocab_size, split, tasks[{name, kind, metric, n_users, n_labels,
                      n_examples, splits{train,valid,test}, file}], interactions{...}, summary{...}
    vocab.json        QueryVocab: queries in id order (0 <pad>, 1 <unk>) with counts
    users.json        {"user_ids": [...]}: row u of sequences.npy belongs to user_ids[u]
    sequences.npy     int32 [n_users, seq_len]: each user's last seq_len query ids, left-padded with 0,
                      most recent last
    splits.npy        int8 [n_users]: the user-level split (0 train, 1 valid, 2 test)
    tasks/NAME.npz    user_index int64 [n], label int64 [n], split int8 [n]: one row per example
                      (multi-target users have several rows). For next_query, label = the user's
                      last query id (the evaluation target; training uses the shifted sequence).
    tasks/NAME.labels.json   {"labels": [...raw label strings in id order], "counts": [...]}
                      (not for next_query)
    interactions.npz  user_index, item_index, timestamp (int64), chronological per user (optional)
    items.json        {"item_ids": [...], "texts": [...]}: item id order of interactions (optional)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from querylearn import __version__
from querylearn.artifacts import (
    check_manifest,
    check_out_dir,
    file_sha256,
    read_json,
    read_npy,
    read_npz,
    write_json,
    write_npy,
    write_npz,
)
from querylearn.data.splits import SPLIT_NAMES
from querylearn.data.vocab import QueryVocab
from querylearn.errors import ArtifactError, QuerylearnError

SCHEMA_VERSION = 1
MANIFEST = "dataset.json"


@dataclass
class TaskArrays:
    """One task's examples. Shapes: user_index, label, split all [n_examples]."""

    name: str
    kind: str
    metric: str
    user_index: np.ndarray
    label: np.ndarray
    split: np.ndarray
    n_labels: int
    label_names: list[str] = field(default_factory=list)
    label_counts: list[int] = field(default_factory=list)

    def rows(self, split: str) -> np.ndarray:
        """Example indices of ``split`` ('train' | 'valid' | 'test'), in stored order (never dropped)."""
        code = SPLIT_NAMES.index(split)
        return np.flatnonzero(self.split == code)

    @property
    def n_users(self) -> int:
        return int(len(np.unique(self.user_index)))

    def split_counts(self) -> dict[str, int]:
        return {name: int((self.split == code).sum()) for code, name in enumerate(SPLIT_NAMES)}


@dataclass
class Interactions:
    """User-item interactions (chronological within each user). Arrays [n_rows] int64."""

    user_index: np.ndarray
    item_index: np.ndarray
    timestamp: np.ndarray
    item_ids: list[str]
    item_texts: list[str]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


@dataclass
class Dataset:
    path: Path | None
    manifest: dict
    vocab: QueryVocab
    user_ids: list[str]
    sequences: np.ndarray  # [n_users, seq_len] int32
    user_split: np.ndarray  # [n_users] int8
    tasks: list[TaskArrays]
    interactions: Interactions | None = None

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def seq_len(self) -> int:
        return int(self.sequences.shape[1])

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskArrays:
        for t in self.tasks:
            if t.name == name:
                return t
        raise QuerylearnError(f"unknown task '{name}'; this dataset has: {', '.join(self.task_names)}")


def write_dataset(
    out_dir: str | Path,
    *,
    source: str,
    synthetic: bool,
    vocab: QueryVocab,
    user_ids: list[str],
    sequences: np.ndarray,
    user_split: np.ndarray,
    tasks: list[TaskArrays],
    interactions: Interactions | None = None,
    split_info: dict | None = None,
    summary: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Write a dataset directory and return its manifest. Deterministic: same inputs, same bytes."""
    out = Path(out_dir)
    check_out_dir(out)
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    n_users, seq_len = sequences.shape
    if len(user_ids) != n_users or len(user_split) != n_users:
        raise ValueError("user_ids, user_split and sequences must have one row per user")
    vocab.save(out / "vocab.json")
    write_json(out / "users.json", {"user_ids": list(user_ids)})
    write_npy(out / "sequences.npy", sequences.astype(np.int32))
    write_npy(out / "splits.npy", user_split.astype(np.int8))
    task_entries = []
    for t in tasks:
        write_npz(
            out / "tasks" / f"{t.name}.npz",
            user_index=t.user_index.astype(np.int64),
            label=t.label.astype(np.int64),
            split=t.split.astype(np.int8),
        )
        if t.kind != "next_query":
            write_json(
                out / "tasks" / f"{t.name}.labels.json", {"labels": t.label_names, "counts": t.label_counts}
            )
        task_entries.append(
            {
                "name": t.name,
                "kind": t.kind,
                "metric": t.metric,
                "n_users": t.n_users,
                "n_labels": int(t.n_labels),
                "n_examples": int(len(t.user_index)),
                "splits": t.split_counts(),
                "file": f"tasks/{t.name}.npz",
            }
        )
    manifest: dict = {
        "kind": "dataset",
        "schema_version": SCHEMA_VERSION,
        "querylearn_version": __version__,
        "source": source,
        "synthetic": bool(synthetic),
        "seq_len": int(seq_len),
        "n_users": int(n_users),
        "vocab_size": len(vocab),
        "normalisation": read_json(out / "vocab.json")["normalisation"],
        "split": split_info or {},
        "tasks": task_entries,
    }
    if interactions is not None:
        write_npz(
            out / "interactions.npz",
            user_index=interactions.user_index.astype(np.int64),
            item_index=interactions.item_index.astype(np.int64),
            timestamp=interactions.timestamp.astype(np.int64),
        )
        write_json(out / "items.json", {"item_ids": interactions.item_ids, "texts": interactions.item_texts})
        manifest["interactions"] = {
            "file": "interactions.npz",
            "items": "items.json",
            "n_rows": int(len(interactions.user_index)),
            "n_users": int(len(np.unique(interactions.user_index))),
            "n_items": interactions.n_items,
        }
    if extra:
        manifest.update(extra)
    manifest["summary"] = summary or {}
    write_json(out / MANIFEST, manifest)
    return manifest


def load_manifest(path: str | Path) -> dict:
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(
            f"{path}: no {MANIFEST} here; create a dataset with 'querylearn prepare SOURCE --out {path}'"
        )
    manifest = read_json(mpath)
    check_manifest(mpath, manifest, kind="dataset", schema_version=SCHEMA_VERSION)
    return manifest


def load_dataset(path: str | Path, *, mmap: bool = False) -> Dataset:
    """Load a dataset directory written by ``write_dataset`` (checks kind and schema version)."""
    path = Path(path)
    manifest = load_manifest(path)
    vocab = QueryVocab.load(path / "vocab.json")
    user_ids = [str(u) for u in read_json(path / "users.json")["user_ids"]]
    sequences = read_npy(path / "sequences.npy", mmap=mmap)
    user_split = read_npy(path / "splits.npy")
    tasks = []
    for entry in manifest["tasks"]:
        arrays = read_npz(path / entry["file"])
        names: list[str] = []
        counts: list[int] = []
        if entry["kind"] != "next_query":
            lab = read_json(path / "tasks" / f"{entry['name']}.labels.json")
            names, counts = list(lab["labels"]), list(lab["counts"])
        tasks.append(
            TaskArrays(
                name=entry["name"],
                kind=entry["kind"],
                metric=entry["metric"],
                user_index=arrays["user_index"],
                label=arrays["label"],
                split=arrays["split"],
                n_labels=int(entry["n_labels"]),
                label_names=names,
                label_counts=counts,
            )
        )
    interactions = None
    if "interactions" in manifest:
        arr = read_npz(path / manifest["interactions"]["file"])
        items = read_json(path / manifest["interactions"]["items"])
        interactions = Interactions(
            user_index=arr["user_index"],
            item_index=arr["item_index"],
            timestamp=arr["timestamp"],
            item_ids=[str(i) for i in items["item_ids"]],
            item_texts=list(items["texts"]),
        )
    if sequences.shape[0] != len(user_ids):
        raise ArtifactError(
            f"{path}/sequences.npy: {sequences.shape[0]} rows but {len(user_ids)} users in users.json"
        )
    return Dataset(path, manifest, vocab, user_ids, sequences, user_split, tasks, interactions)


FINGERPRINT_FILES = ("vocab.json", "users.json", "sequences.npy", "splits.npy")


def dataset_fingerprint(path: str | Path, tasks: list[str]) -> dict[str, str]:
    """SHA-256 of the files a trained model depends on: vocabulary, users, sequences, splits and
    the files of ``tasks`` (``tasks/NAME.npz`` and, for label tasks, ``tasks/NAME.labels.json``).

    A run records it in run.json; :func:`check_dataset_fingerprint` compares it on ``--resume``.
    """
    path = Path(path)
    names = list(FINGERPRINT_FILES)
    for name in tasks:
        names.append(f"tasks/{name}.npz")
        if (path / "tasks" / f"{name}.labels.json").is_file():
            names.append(f"tasks/{name}.labels.json")
    return {n: file_sha256(path / n) for n in names if (path / n).is_file()}


def check_dataset_fingerprint(path: str | Path, recorded: dict[str, str] | None, run_dir: str | Path) -> None:
    """Raise when a file recorded in ``recorded`` differs or is gone (runs without a record pass)."""
    if not recorded:
        return
    path = Path(path)
    for name, digest in recorded.items():
        if not (path / name).is_file() or file_sha256(path / name) != digest:
            raise ArtifactError(
                f"{path / name}: the dataset changed since run {run_dir} was trained on it (its SHA-256 "
                f"differs from run.json's data_fingerprint); re-prepare it exactly as before, or start a "
                f"new run with 'querylearn train-sequence --data {path} --out NEW_RUN'"
            )
