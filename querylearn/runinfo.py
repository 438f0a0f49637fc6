"""Paths stored in a run's metadata (``run.json``), relative to the run directory.

A run directory records where its dataset and its input-embedding table live. They are stored
relative to the run directory (``../data``), so a folder holding the data, the table and the runs
can be moved or copied as a whole; runs written before this rule hold absolute paths, which are
still read as they are.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from querylearn.artifacts import read_json
from querylearn.errors import ArtifactError

RUN_FILE = "run.json"


def stored_path(path: str | Path, run_dir: str | Path) -> str:
    """``path`` as written into the run's metadata: relative to ``run_dir`` (POSIX separators).

    Falls back to the absolute path when no relative path exists (another drive on Windows)."""
    target = Path(path).resolve()
    base = Path(run_dir).resolve()
    try:
        rel = os.path.relpath(target, base)
    except ValueError:
        return str(target)
    return Path(rel).as_posix()


def resolve_stored(value: str | None, run_dir: str | Path) -> Path | None:
    """A path read from the run's metadata: relative ones are taken from ``run_dir``."""
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(run_dir) / path


@dataclass(frozen=True)
class RunPaths:
    """Where a run's inputs are, resolved against the run directory (which may have moved)."""

    run_dir: Path
    data: Path
    embeddings: Path | None
    meta: dict


def read_run_paths(run_dir: str | Path) -> RunPaths:
    """Read ``RUN/run.json`` and resolve its ``data`` and ``embeddings`` entries.

    Raises ArtifactError naming the file when the dataset it points at is not there."""
    run_dir = Path(run_dir)
    meta = read_json(run_dir / RUN_FILE)
    if "data" not in meta:
        raise ArtifactError(f"{run_dir / RUN_FILE}: no 'data' entry (is this a train-sequence run?)")
    data = resolve_stored(meta["data"], run_dir)
    if not (data / "dataset.json").is_file():
        raise ArtifactError(
            f"{run_dir / RUN_FILE}: its dataset {meta['data']!r} is not at {data}; keep the run and the "
            "dataset in the same relative places when moving them, or fix 'data' in run.json"
        )
    return RunPaths(run_dir, data, resolve_stored(meta.get("embeddings"), run_dir), meta)
