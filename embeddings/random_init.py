"""The ``random`` source: a seeded table at the backbone's initialisation scale.

docs/algorithms.md#initialisation: item (query) embeddings ~ U(-sqrt(1/|V|), +sqrt(1/|V|)), |V| the
full vocabulary size including ``<pad>``. The pad row is zero (it is the padding input).

It embeds no text, so it is a :class:`~querylearn.embeddings.base.TableSource` (the whole table from
the vocabulary size) rather than a query embedder; it is registered with the other sources in
``build.EMBEDDERS``.
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


class RandomTable:
    """The ``random`` source as a TableSource: ``make_table(V)`` is ``random_table(V, dim, seed)``."""

    embeds_text = False

    def __init__(self, dim: int, seed: int):
        self.native_dim = int(dim)
        self.seed = int(seed)

    def make_table(self, vocab_size: int) -> np.ndarray:
        return random_table(vocab_size, self.native_dim, self.seed)

    def describe(self, vocab_size: int) -> dict:
        return {
            "model": None,
            "tokenizer": None,
            "pooling": "none",
            "include_special": None,
            "max_length": None,
            "native_dim": self.native_dim,
            "init": f"U(-sqrt(1/|V|), +sqrt(1/|V|)) with |V| = {vocab_size} "
            "(docs/algorithms.md#initialisation), pad row zero",
        }
