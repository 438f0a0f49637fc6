"""User representations for ``coldstart-eval``: read the UserRepresentations Parquet (or export them
from train-sequence runs) and align them to the dataset.

Contract (written by ``querylearn export-users``): a Parquet file with a string column
``user_id`` and either ``embedding`` (a list of floats per row, the default) or float vector
columns ``v0 .. v{D-1}`` (``--wide``); one row per user, ids unique. Every id
must be a user of the dataset, and every dataset user who has an interaction must have a row
(they are all ranked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from querylearn.errors import DataError, QuerylearnError

_VEC = re.compile(r"^v(\d+)$")


@dataclass
class UserRepresentations:
    """One representation source. ``vectors`` [n, D] float32 rows match ``user_ids``."""

    name: str
    user_ids: list[str]
    vectors: np.ndarray
    origin: str  # file or run directory (+ task) it came from

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_user_parquet(path: str | Path, name: str | None = None) -> UserRepresentations:
    """Read ``user_id`` + ``v0..v{D-1}`` from a Parquet file; errors name the file and the fix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found", fix="write it with 'querylearn export-users'")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    columns = table.column_names
    if "user_id" not in columns:
        raise DataError(
            path,
            f"missing column 'user_id' (found: {', '.join(columns[:8])})",
            fix="export with 'querylearn export-users' (columns user_id, v0..v{D-1})",
        )
    listed = "embedding" in columns  # the default layout: one list column (querylearn.userfile)
    vec_cols = [] if listed else sorted((int(m.group(1)), c) for c in columns if (m := _VEC.match(c)))
    if not vec_cols and not listed:
        raise DataError(path, "no 'embedding' column and no vector columns v0..v{D-1}",
                        fix="export with 'querylearn export-users'")
    expected = list(range(len(vec_cols)))
    if [i for i, _ in vec_cols] != expected:
        missing = sorted(set(expected) - {i for i, _ in vec_cols})
        raise DataError(path, f"vector columns are not contiguous from v0 (missing v{missing[0]})")
    for _, c in vec_cols:
        if not pa.types.is_floating(table.schema.field(c).type) and not pa.types.is_integer(
            table.schema.field(c).type
        ):
            raise DataError(path, f"column '{c}' has type {table.schema.field(c).type}, expected float32")
    user_ids = [str(u) if u is not None else None for u in table.column("user_id").to_pylist()]
    for row, u in enumerate(user_ids):
        if u is None or u == "":
            raise DataError(path, "empty user_id", row=row + 1)
    if listed:
        from querylearn.userfile import embedding_matrix

        vectors = embedding_matrix(path, table.column("embedding"))
    else:
        vectors = np.column_stack(
            [table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for _, c in vec_cols]
        )
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"non-finite vector for user_id '{user_ids[row]}'", row=row + 1)
    seen: dict[str, int] = {}
    for row, u in enumerate(user_ids):
        if u in seen:
            raise DataError(path, f"user_id '{u}' appears twice (rows {seen[u] + 1} and {row + 1})")
        seen[u] = row
    return UserRepresentations(name or path.stem, user_ids, vectors, str(path))


def align_to_dataset(
    rep: UserRepresentations, dataset_user_ids: list[str], required: np.ndarray
) -> np.ndarray:
    """Reorder ``rep`` to dataset user order. -> [n_users, D] float32 (zeros for users not required).

    required: [n_users] bool, users that must have a vector (every ranked user).
    """
    index = {u: i for i, u in enumerate(dataset_user_ids)}
    out = np.zeros((len(dataset_user_ids), rep.dim), dtype=np.float32)
    have = np.zeros(len(dataset_user_ids), dtype=bool)
    unknown = [u for u in rep.user_ids if u not in index]
    if unknown:
        raise QuerylearnError(
            f"{rep.origin}: {len(unknown)} user_id(s) are not users of the dataset (first: '{unknown[0]}'); "
            "export the representations from a run trained on this dataset"
        )
    rows = np.array([index[u] for u in rep.user_ids], dtype=np.int64)
    out[rows] = rep.vectors
    have[rows] = True
    missing = np.flatnonzero(required & ~have)
    if len(missing):
        raise QuerylearnError(
            f"{rep.origin}: no representation for {len(missing)} dataset user(s) with interactions "
            f"(first: '{dataset_user_ids[missing[0]]}'); export every user (export-users --users all)"
        )
    return out


def standardise(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-dimension z-score using the mean/std of ``rows`` (users ranked). [U, D] -> [U, D] float32.

    Keeps the scale of every source comparable for the learnt projection; constant dimensions
    are only centred.
    """
    sub = vectors[rows].astype(np.float64)
    mean = sub.mean(axis=0)
    std = sub.std(axis=0)
    std[std < 1e-12] = 1.0
    return ((vectors - mean) / std).astype(np.float32)


def source_label(run: str | Path, after_task: str, mask_task: str, *, chosen: bool = True) -> tuple[str, str]:
    """(name, origin) of a run's representation source. The name says the checkpoint's task and the
    mask's (``RUNDIR@AFTER/mask-MASK``) when either was chosen; the run as trained (last model, its
    own mask) keeps the plain ``RUNDIR``. The origin always says both."""
    name = f"{Path(run).name}@{after_task}/mask-{mask_task}" if chosen else Path(run).name
    return name, f"{run} (model after task {after_task}, mask of {mask_task})"


def representations_from_runs(
    runs: list[Path], tasks: list[str], mask_task: str | None = None
) -> list[UserRepresentations]:
    """Export every user's representation from each train-sequence run, as the model was after
    each task in ``tasks`` (default: the last task learnt), under ``mask_task``'s mask (default:
    each checkpoint's last task).

    One source per run and task, named ``RUNDIR@AFTER/mask-MASK`` (:func:`source_label`; ``RUNDIR``
    when neither task is given). The
    export runs in memory through ``querylearn.export`` (the same code as ``querylearn
    export-users``); it is imported here, not at module level, so the rest of ``recsys`` stays
    independent of the models.
    """
    from querylearn import export

    out = []
    for run in runs:
        if not Path(run).is_dir():
            raise QuerylearnError(f"--run {run}: not a directory (pass a train-sequence run directory)")
        for task in tasks or [None]:
            _, after, mask = export.resolve_export(run, task, mask_task)
            user_ids, vectors = export.export_user_representations(
                run, after_task=after, mask_task=mask, users="all"
            )
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.ndim != 2 or len(user_ids) != len(vectors):
                raise QuerylearnError(
                    f"--run {run}: export returned {len(user_ids)} ids for vectors {vectors.shape}"
                )
            name, origin = source_label(run, after, mask, chosen=task is not None or mask_task is not None)
            out.append(UserRepresentations(name, [str(u) for u in user_ids], vectors, origin))
    return out
