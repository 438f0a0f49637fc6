"""PCA projection of a vector table to ``--dim`` (numpy SVD, float64).

Fitted on the vocabulary's real query rows (ids 2..V-1; ``<pad>`` and ``<unk>`` excluded):
x' = (x - mu) W^T with mu the row mean and W the top ``dim`` right singular vectors [dim, D].
Each component's sign is fixed so that its largest-magnitude coordinate is positive, which makes the
result deterministic. The same ``mu`` and ``W`` (saved as ``projection_mean.npy`` and
``projection_components.npy``) are applied by ``embed-queries``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from querylearn.errors import QuerylearnError


@dataclass
class PcaProjection:
    mean: np.ndarray  # [D] float64
    components: np.ndarray  # [dim, D] float64
    explained_variance_ratio: np.ndarray  # [dim] float64

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """float32 [N, dim] from [N, D]."""
        return ((np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T).astype(np.float32)


def fit_pca(x: np.ndarray, dim: int) -> PcaProjection:
    """Fit on rows of ``x`` [N, D]; ``dim`` must be <= min(N - 1, D) (the rank of centred data)."""
    n, d = x.shape
    if dim < 1 or dim > min(n - 1, d):
        raise QuerylearnError(
            f"--dim {dim}: PCA on {n} query vectors of width {d} gives at most {max(min(n - 1, d), 0)} "
            "components; pass a smaller --dim (or none to keep the native width)"
        )
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    _, s, vt = np.linalg.svd(x64 - mean, full_matrices=False)
    comps = vt[:dim]
    signs = np.sign(comps[np.arange(dim), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    var = s**2
    total = var.sum()
    ratio = var[:dim] / total if total > 0 else np.zeros(dim)
    return PcaProjection(mean, comps, ratio)
