"""The classic baselines of ``coldstart-eval`` (most-popular, implicit ALS and BPR) as fitting functions,
and the random user representation (same shape as a learnt one, no learning). ``recommenders.py`` puts
them behind the Recommender protocol.

ALS (Hu, Koren & Volinsky 2008) is fitted on the warm users' training rows only; cold users are
then folded in with ``recalculate_user`` from their (0 or 1) training interactions, i.e. solved
against the fixed item factors as a new user would be. A user with no training interaction gets
a zero factor, so all their candidates tie (ties are broken by the shared seeded keys, see
``evaluate``). BPR (Rendle et al. 2009) has no fold-in in ``implicit``; it is fitted on every
training row, and users with no training interaction keep their random initial factors.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from querylearn.recsys.interactions import Split


@dataclass
class BaselineConfig:
    """Hyper-parameters of the classic baselines (implicit's CPU models)."""

    als_factors: int = 64
    als_regularization: float = 0.05
    als_alpha: float = 1.0
    als_iterations: int = 15
    bpr_factors: int = 64
    bpr_learning_rate: float = 0.01
    bpr_regularization: float = 0.01
    bpr_iterations: int = 100


def train_matrix(split: Split, users: np.ndarray | None = None) -> sp.csr_matrix:
    """Binary user x item CSR [n_users, n_items] of training pairs (only ``users``' rows if given)."""
    u, i = split.train_user, split.train_item
    if users is not None:
        keep = np.isin(u, users)
        u, i = u[keep], i[keep]
    m = sp.csr_matrix((np.ones(len(u), dtype=np.float32), (u, i)), shape=(split.n_users, split.n_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def gather_scores(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, cands: np.ndarray
) -> np.ndarray:
    """Dot products [N, C] (float64) of users [N] with candidate items [N, C].

    user_factors [n_users, k], item_factors [n_items, k]; the products are taken in the factors'
    dtype (float32 for implicit), then widened.
    """
    return np.einsum("nd,ncd->nc", user_factors[users], item_factors[cands]).astype(np.float64)


def item_popularity(split: Split) -> np.ndarray:
    """Number of training interactions per item. -> [n_items] float64 (the most-popular score)."""
    return np.bincount(split.train_item, minlength=split.n_items).astype(np.float64)


def _blas_single_thread():
    """Context: BLAS on one thread while implicit runs (its own threads do the work; it warns otherwise)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, "blas")
    except ImportError:  # threadpoolctl comes with implicit; optional
        return contextlib.nullcontext()


def fit_als(
    split: Split, config: BaselineConfig, seed: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """implicit ALS fitted on warm users, cold users folded in with ``recalculate_user``.

    Returns (user factors [n_users, k], item factors [n_items, k]) float32.
    """
    from implicit.cpu.als import AlternatingLeastSquares

    warm_users = np.flatnonzero(~split.cold)
    with _blas_single_thread():
        model = AlternatingLeastSquares(
            factors=config.als_factors,
            regularization=config.als_regularization,
            alpha=config.als_alpha,
            iterations=config.als_iterations,
            num_threads=threads,
            random_state=seed,
        )
        # With no warm user at all there is nothing to fit the item factors on but the cold rows.
        model.fit(train_matrix(split, warm_users if len(warm_users) else None), show_progress=False)
        user_factors = np.array(model.user_factors, dtype=np.float32, copy=True)
        cold_users = np.flatnonzero(split.cold)
        if len(cold_users):
            full = train_matrix(split)
            user_factors[cold_users] = model.recalculate_user(cold_users, full[cold_users])
    return user_factors, np.asarray(model.item_factors)


def fit_bpr(
    split: Split, config: BaselineConfig, seed: int, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """implicit BPR fitted on every training row. -> (user factors [n_users, k], item factors [n_items, k]).

    Always one thread: implicit's BPR is lock-free parallel SGD, so with more threads the result
    changes from run to run even with ``random_state`` fixed. ``threads`` is accepted for symmetry.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    with _blas_single_thread():
        model = BayesianPersonalizedRanking(
            factors=config.bpr_factors,
            learning_rate=config.bpr_learning_rate,
            regularization=config.bpr_regularization,
            iterations=config.bpr_iterations,
            num_threads=1,
            random_state=seed,
        )
        model.fit(train_matrix(split), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def random_representations(n_users: int, dim: int, seed: int) -> np.ndarray:
    """Standard-normal user vectors [n_users, dim] float32: the 'no learning' representation."""
    return np.random.default_rng([seed, 11, dim]).standard_normal((n_users, dim)).astype(np.float32)
