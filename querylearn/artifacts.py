"""Artifact I/O without pickle: atomic JSON / .npy / .npz writes and checked reads.

Every artifact directory holds a JSON manifest with ``kind`` and ``schema_version``; readers
check both and name the file, the expected value and the value found.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from querylearn.errors import ArtifactError, QuerylearnError


def process_umask() -> int:
    """The process umask (read from /proc where it can be, else set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """The one atomic-write pattern: ``write(tmp)`` fills a temp file beside ``path`` (parents are
    created), then ``os.replace`` moves it over ``path``; on any error the temp file is removed and
    ``path`` keeps its previous content (never a half-written file). The file gets the mode the
    process umask gives a new file (0644 under 022), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~process_umask())  # after write: some writers re-create the file
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsynced before the rename)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, write)


def write_json(path: str | Path, obj: Any) -> None:
    """Deterministic JSON (sorted keys off: order is meaningful; UTF-8, no ASCII escapes)."""
    text = json.dumps(obj, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid UTF-8 JSON ({exc})") from None


def write_npy(path: str | Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)

    atomic_write(path, write)


def read_npy(path: str | Path, *, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Uncompressed .npz with a fixed member order (byte-identical for identical inputs)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.save(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, member.getvalue())
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def check_manifest(path: str | Path, manifest: dict, *, kind: str, schema_version: int) -> None:
    """Raise ArtifactError unless ``manifest`` has the expected ``kind`` and ``schema_version``."""
    found_kind = manifest.get("kind")
    if found_kind != kind:
        raise ArtifactError(f"{path}: expected kind '{kind}', found '{found_kind}'")
    found_version = manifest.get("schema_version")
    if found_version != schema_version:
        raise ArtifactError(
            f"{path}: expected schema_version {schema_version}, found {found_version} "
            "(re-create the artifact with this querylearn version)"
        )


def file_sha256(path: str | Path, *, limit: int | None = None) -> str:
    """Hex SHA-256 of a file (first ``limit`` bytes if given)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = limit
        while True:
            chunk = fh.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining <= 0:
                    break
    return h.hexdigest()


def check_out_dir(path: str | Path, option: str = "--out") -> None:
    """Raise a one-line error when ``path`` cannot become an output folder (it, or a parent, is a file)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            where = "is a file" if p == path else f"lies under {p}, which is a file"
            raise QuerylearnError(
                f"{option} {path}: {where}, not a folder; pass a new or existing folder path"
            )
