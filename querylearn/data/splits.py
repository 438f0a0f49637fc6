"""Deterministic train/valid/test splits (codes 0 = train, 1 = valid, 2 = test).

``user`` mode (default): one seeded permutation of all users; the first 80% are train, the next
5% valid, the last 15% test. Every task inherits its users' split, so a test user is a test user
in every task and retention never trains on a test user's labels.

``example`` mode (parity with the official code, docs/algorithms.md#splits): each task's examples are permuted
independently with the seed; ``n_eval = floor(0.2 n)``, ``n_test = floor(0.75 n_eval)`` computed
explicitly (fixing bug B32's negative slices, #b32): train = first ``n - n_eval``, valid = next
``n_eval - n_test``, test = last ``n_test``.
"""

from __future__ import annotations

import numpy as np

TRAIN, VALID, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_MODES = ("user", "example")


def split_sizes(n: int, valid_fraction: float = 0.05, test_fraction: float = 0.15) -> tuple[int, int, int]:
    """(n_train, n_valid, n_test) with n_eval = floor((valid+test) n),
    n_test = floor(test/(valid+test) * n_eval)."""
    eval_fraction = valid_fraction + test_fraction
    n_eval = int(np.floor(eval_fraction * n + 1e-9))
    n_test = int(np.floor((test_fraction / eval_fraction) * n_eval + 1e-9)) if eval_fraction > 0 else 0
    return n - n_eval, n_eval - n_test, n_test


def permuted_split(
    n: int, seed: int, valid_fraction: float = 0.05, test_fraction: float = 0.15
) -> np.ndarray:
    """Split codes [n] int8 for n items after a seeded permutation."""
    n_train, n_valid, _ = split_sizes(n, valid_fraction, test_fraction)
    order = np.random.default_rng(seed).permutation(n)
    codes = np.empty(n, dtype=np.int8)
    codes[order[:n_train]] = TRAIN
    codes[order[n_train : n_train + n_valid]] = VALID
    codes[order[n_train + n_valid :]] = TEST
    return codes
