"""Shared fixtures. Real public data is read from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# tests/kobert_tiny.py (the tiny KoBERT-shaped model builders) importable however pytest was started
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ML100K = SHARED_DATA / "movielens-100k"
KMRD = SHARED_DATA / "kmrd-small"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K}")
    return ML100K


@pytest.fixture(scope="session")
def kmrd_dir() -> Path:
    if not (KMRD / "rates.csv").is_file():
        pytest.skip(f"KMRD-small not found at {KMRD}")
    return KMRD


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory) -> Path:
    """The tiny known-answer dataset of tests/toy.py (200 users, 3 tasks)."""
    from toy import make_toy_dataset  # tests/toy.py

    out = tmp_path_factory.mktemp("toy")
    make_toy_dataset(out)
    return out


@pytest.fixture(scope="session")
def toy(toy_dataset) -> Path:
    """Short name for ``toy_dataset`` (read-only: tests write their outputs elsewhere)."""
    return toy_dataset
