"""User representations from a train-sequence run -> Parquet (the UserRepresentations artifact).

File contract (read by ``coldstart-eval``; :mod:`querylearn.userfile`): column ``user_id`` (string)
then ``embedding`` (fixed-size list of float32), or ``v0 .. v{D-1}`` (float32) with ``--wide``; one
row per user in the dataset's user order. File-level metadata key ``querylearn``
holds JSON: kind "user-representations", schema_version, run dir, checkpoint, task whose mask was
used, masking, s, pooling ("last-position"), users ("all" | "test"), dim, dataset path.

The representation of a user is the backbone output at the last position of the stored sequence
(docs/algorithms.md#readout), computed with the chosen task's mask at the model's evaluation scale s = smax.

Two independent choices (issue 17): ``after_task`` picks the model *as it was after learning that
task* (the checkpoint ``NN-AFTER.json``, trained on T1..AFTER only; default: the last task learnt),
and ``mask_task`` picks the task whose mask is applied (default: that checkpoint's last task, i.e.
``after_task``). Within the chosen checkpoint, the model that answers for the mask task is the one
its ``task_checkpoints`` names (the same model for most strategies, the task's own for SinMo).
The metadata records both (``after_task``; ``task`` = ``mask_task``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from querylearn import __version__
from querylearn.artifacts import read_json
from querylearn.continual.checkpoint import load_checkpoint, read_checkpoint_meta
from querylearn.data.dataset import load_dataset
from querylearn.data.splits import TEST
from querylearn.errors import ArtifactError, QuerylearnError
from querylearn.runinfo import read_run_paths

USERS = ("all", "test")
KIND = "user-representations"
SCHEMA_VERSION = 1


def _checkpoints(run_dir: Path) -> list[Path]:
    paths = sorted((run_dir / "checkpoints").glob("*.json"))
    if not paths:
        raise ArtifactError(
            f"{run_dir}: no checkpoints; train first with 'querylearn train-sequence --out {run_dir}'"
        )
    return paths


def _pick_checkpoint(run_dir: Path, after_task: str | None, mask_task: str | None) -> tuple[Path, str, str]:
    """(checkpoint of the model that answers for ``mask_task`` after learning ``after_task``,
    after_task, mask_task), the defaults resolved (see the module docstring)."""
    paths = _checkpoints(run_dir)
    seen = read_checkpoint_meta(paths[-1])["tasks_seen"]
    after = after_task or seen[-1]
    if after not in seen:
        raise QuerylearnError(f"--after-task {after}: the run has learnt {', '.join(seen)}")
    after_path = paths[-1].parent / f"{seen.index(after) + 1:02d}-{after}.json"
    if not after_path.is_file():
        raise ArtifactError(f"{after_path}: the checkpoint after task {after} is missing")
    meta = read_checkpoint_meta(after_path)
    learnt = meta["tasks_seen"]
    mask = mask_task or learnt[-1]
    if mask not in learnt:
        raise QuerylearnError(
            f"--mask-task {mask}: the model after {after} has learnt {', '.join(learnt)} "
            "(choose one of those, or a later --after-task)"
        )
    if "task_checkpoints" in meta:
        return after_path.parent / meta["task_checkpoints"][mask], after, mask
    # runs written before task_checkpoints: the last checkpoint up to AFTER whose model holds the mask's head
    for path in reversed(paths[: seen.index(after) + 1]):
        if any(name == mask for name, _ in read_checkpoint_meta(path)["heads"]):
            return path, after, mask
    raise ArtifactError(f"{run_dir}/checkpoints: no checkpoint holds task {mask}")


def resolve_export(
    run_dir: str | Path, after_task: str | None = None, mask_task: str | None = None
) -> tuple[Path, str, str]:
    """(checkpoint JSON, after_task, mask_task) an export would use, defaults resolved; loads no model."""
    return _pick_checkpoint(Path(run_dir), after_task, mask_task)


@torch.no_grad()
def export_user_representations(
    run_dir: str | Path,
    task: str | None = None,
    users: str = "all",
    *,
    after_task: str | None = None,
    mask_task: str | None = None,
    batch_size: int = 1024,
    device: str = "cpu",
) -> tuple[list[str], np.ndarray]:
    """(user_ids, vectors [U, D] float32) of ``users`` ("all" | "test") from the model after
    ``after_task`` (default: the last task learnt) under ``mask_task``'s mask (default: the
    checkpoint's last task). ``task`` is the older name of ``mask_task``."""
    vectors, user_ids, _ = _export(Path(run_dir), after_task, mask_task or task, users, batch_size, device)
    return user_ids, vectors


@torch.no_grad()
def _export(
    run_dir: Path, after_task: str | None, task: str | None, users: str, batch_size: int, device: str
):
    if users not in USERS:
        raise QuerylearnError(f"--users {users!r} is not one of {', '.join(USERS)}")
    run_meta = read_json(run_dir / "run.json")
    path, after_task, task = _pick_checkpoint(run_dir, after_task, task)
    model, meta, _ = load_checkpoint(path, device)
    model.eval()
    data_dir = read_run_paths(run_dir).data  # stored relative to the run directory
    ds = load_dataset(data_dir)
    if len(ds.vocab) != model.item_embedding.num_embeddings:
        raise ArtifactError(
            f"{run_meta['data']}: vocabulary size {len(ds.vocab)} differs from the checkpoint's "
            f"{model.item_embedding.num_embeddings}"
        )
    rows = np.arange(ds.n_users) if users == "all" else np.flatnonzero(ds.user_split == TEST)
    masks = model.task_masks(task, model.smax)
    seqs = np.asarray(ds.sequences)
    out = np.zeros((len(rows), model.config.channels), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        ids = torch.as_tensor(
            seqs[rows[start : start + batch_size]].astype(np.int64), device=device
        )  # [b, L]
        out[start : start + len(ids)] = model.encode(ids, masks, task=task).float().cpu().numpy()  # [b, C]
    info = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "querylearn_version": __version__,
        "run_dir": str(run_dir.resolve()),
        "checkpoint": str(path.resolve()),
        "task": task,  # the mask task
        "after_task": after_task,
        "masking": model.masking,
        "s": model.smax,
        "pooling": "last-position",
        "users": users,
        "n_users": int(len(rows)),
        "dim": int(out.shape[1]),
        "dataset": str(data_dir.resolve()),
        "strategy": meta["strategy"],
    }
    return out, [ds.user_ids[i] for i in rows], info


def export_users(
    run_dir: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    after_task: str | None = None,
    mask_task: str | None = None,
    users: str = "all",
    batch_size: int = 1024,
    device: str = "cpu",
    wide: bool = False,
) -> dict:
    """Write the Parquet file (atomically; ``embedding`` column, or ``v0..`` when ``wide``) and
    return its metadata dict (``task`` = ``mask_task``)."""
    from querylearn.userfile import write_user_vectors

    vectors, user_ids, info = _export(Path(run_dir), after_task, mask_task or task, users, batch_size, device)
    return write_user_vectors(out, user_ids, vectors, info, wide=wide)
