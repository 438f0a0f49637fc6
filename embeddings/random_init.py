"""The ``random`` source: a seeded table at the backbone's initialisation scale.

ALGORITHMS.md section 3.3: item (query) embeddings ~ U(-sqrt(1/|V|), +sqrt(1/|V|)), |V| the full
vocabulary size including ``<pad>``. The pad row is zero (it is the padding input).
"""

from __future__ import annotations

import numpy as np


def random_table(vocab_size: int, dim: int, seed: int) -> np.ndarray:
    """float32 [vocab_size, dim], row 0 zero, the rest U(-a, a) with a = sqrt(1 / vocab_size)."""
    bound = float(np.sqrt(1.0 / vocab_size))
    rng = np.random.default_rng(seed)
    table = rng.uniform(-bound, bound, size=(vocab_size, dim)).astype(np.float32)
    table[0] = 0.0
    return table
