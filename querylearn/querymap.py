"""Vectors for queries outside a trained model's vocabulary.

A model trained from an embed-init table whose source embeds text (kobert, hf, e5) can give an
unseen query a vector: the source embeds it exactly as it embedded the table (same normalisation,
segmentation, tokenizer, pooling, ``<unk>`` rule and PCA projection), and a linear map fitted on the
known vocabulary carries it from the table's space into the trained input space (training moves the
item-embedding rows away from their initial values):

    minimise_W,b  || (X - mean(X)) W - (Y - mean(Y)) ||^2 + lambda ||W||^2,   b = mean(Y) - mean(X) W

with X [n, E_src] the table rows of the real queries (ids 2..V-1), Y [n, E] the trained rows, and
lambda = ridge * trace(Xc^T Xc) / E_src (scale-free). A random table embeds no text: its unseen
queries stay ``<unk>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from querylearn.errors import QuerylearnError

TEXT_SOURCES = ("kobert", "hf", "e5")
DEFAULT_RIDGE = 1e-3


@dataclass(frozen=True)
class LinearMap:
    """x [N, E_src] -> x W + b [N, E]; ``r2`` is the fit's coefficient of determination on its rows."""

    weight: np.ndarray  # [E_src, E] float32
    bias: np.ndarray  # [E] float32
    r2: float
    n_fit: int
    ridge: float

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[N, E_src] -> [N, E] float32."""
        return (np.asarray(x, dtype=np.float64) @ self.weight + self.bias).astype(np.float32)

    def describe(self) -> dict:
        return {
            "method": "ridge least squares (centred)",
            "n_fit": self.n_fit,
            "ridge": self.ridge,
            "r2": round(self.r2, 6),
            "from_dim": int(self.weight.shape[0]),
            "to_dim": int(self.weight.shape[1]),
        }


def fit_linear_map(source: np.ndarray, target: np.ndarray, *, ridge: float = DEFAULT_RIDGE) -> LinearMap:
    """Fit the map on aligned rows: source [n, E_src], target [n, E] (float64 normal equations)."""
    x = np.asarray(source, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"source {x.shape} and target {y.shape} must be [n, E_src] and [n, E]")
    if len(x) < 2:
        raise QuerylearnError("fitting the unseen-query map needs at least 2 known queries")
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc  # [E_src, E_src]
    lam = ridge * max(np.trace(gram) / x.shape[1], 1e-12)
    weight = np.linalg.solve(gram + lam * np.eye(x.shape[1]), xc.T @ yc)  # [E_src, E]
    bias = y_mean - x_mean @ weight
    resid = yc - xc @ weight
    total = float((yc**2).sum())
    r2 = 1.0 - float((resid**2).sum()) / total if total > 0 else 1.0
    return LinearMap(weight.astype(np.float32), bias.astype(np.float32), r2, int(len(x)), float(ridge))


def save_map(path: str | Path, m: LinearMap) -> None:
    """safetensors file: ``weight`` [E_src, E], ``bias`` [E] (+ the fit numbers as string metadata)."""
    from safetensors.numpy import save_file

    from querylearn.artifacts import atomic_write

    tensors = {"weight": np.ascontiguousarray(m.weight), "bias": np.ascontiguousarray(m.bias)}
    meta = {"r2": repr(m.r2), "n_fit": str(m.n_fit), "ridge": repr(m.ridge)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_map(path: str | Path) -> LinearMap:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata() or {}
        weight, bias = fh.get_tensor("weight"), fh.get_tensor("bias")
    return LinearMap(
        weight,
        bias,
        float(meta.get("r2", "nan")),
        int(meta.get("n_fit", 0)),
        float(meta.get("ridge", DEFAULT_RIDGE)),
    )


def can_embed_text(table_meta: dict | None) -> bool:
    """Whether an embed-init table's source can embed a new query's text."""
    return bool(table_meta) and table_meta.get("source") in TEXT_SOURCES


class UnseenQueryEmbedder:
    """Embeds unseen queries with the table's source and maps them into the trained input space.

    ``table_dir``: an embed-init table (``meta.json`` names the source and its model);
    ``text_model``: another folder holding the same model files (their hashes must match).
    The source model is loaded on first use."""

    def __init__(self, table_dir: str | Path, linear_map: LinearMap, *, text_model: str | None = None):
        self.table_dir = Path(table_dir)
        self.map = linear_map
        self.text_model = text_model
        self._encoder = None

    def embed(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (vectors [N, E] float32 in the trained input space, empty [N] bool: no content to embed)."""
        if self._encoder is None:
            from querylearn.embeddings import QueryEncoder, load_embedding_table

            self._encoder = QueryEncoder(load_embedding_table(self.table_dir), model=self.text_model)
        out = self._encoder.embed(list(queries))
        return self.map.apply(out.vectors), np.asarray(out.empty, dtype=bool)
