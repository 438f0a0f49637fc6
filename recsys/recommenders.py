"""Every method of a ``coldstart-eval`` report behind one protocol, looked up by name.

::

    rec = RECOMMENDERS.get("neumf-rep")(ncf=..., baseline=..., seed=0, threads=1)
    summary = rec.fit(FitData(split, valid=valid, user_vectors=reps))
    scores = rec.score(users, candidates)  # users [N], candidates [N, C] -> [N, C] float, higher = better

Registered names (``RECOMMENDERS.names()``):

- ``most-popular``, ``als``, ``bpr``: the classic baselines (``baselines.py``);
- ``{model}-{variant}`` for every NCF model (``gmf``, ``mlp``, ``neumf``) and user side (``id``,
  ``init``, ``concat``, ``rep``; ``ncf.py``), e.g. ``neumf-id`` (plain NCF) or ``gmf-rep``.

A recommender sees only ``FitData``: the training pairs of the split (never the test items), the
validation candidate lists for model selection, and optional side information (user
representations, item text vectors), which the methods that do not use it ignore. Two declared
capabilities tell a caller (and the shared contract test) what to expect: ``personalised`` (scores
depend on the user) and ``uses_user_vectors`` (it needs ``FitData.user_vectors``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from querylearn.errors import QuerylearnError
from querylearn.recsys.baselines import (
    BaselineConfig,
    fit_als,
    fit_bpr,
    gather_scores,
    item_popularity,
)
from querylearn.recsys.interactions import Split
from querylearn.recsys.ncf import MODELS, NCF, VARIANTS
from querylearn.recsys.train import NCFConfig, score_candidates, train_ncf
from querylearn.registry import Registry

RECOMMENDERS = Registry("recommender")
CLASSIC = ("most-popular", "als", "bpr")  # the classic baselines, in report order


@dataclass(frozen=True)
class FitData:
    """What a recommender may learn from.

    split: training pairs (``train_user``/``train_item``), cold flags, sizes.
    valid: (users [n], candidates [n, C]) validation lists (held-out item in column 0), or None.
    user_vectors: [n_users, D] float32 user representations r_u, or None.
    item_vectors: [n_items, E] float32 item text vectors, or None.
    """

    split: Split
    valid: tuple[np.ndarray, np.ndarray] | None = None
    user_vectors: np.ndarray | None = None
    item_vectors: np.ndarray | None = None


@dataclass
class FitSummary:
    """What fitting learnt about itself (empty for the classic baselines).

    best_epoch: the epoch kept; valid_hr10: validation HR@10 per epoch; train_loss: mean loss per epoch.
    """

    best_epoch: int | None = None
    valid_hr10: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)


class Recommender(Protocol):
    """Fit on ``FitData``, then score candidate lists."""

    personalised: bool
    uses_user_vectors: bool

    def fit(self, data: FitData) -> FitSummary: ...

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """users [N] int64, candidates [N, C] int64 -> scores [N, C] float (higher ranks first)."""
        ...


def _not_fitted(name: str) -> QuerylearnError:
    return QuerylearnError(f"recommender '{name}': call fit(...) before score(...)")


class MostPopular:
    """Score = number of training interactions of the item, the same for every user."""

    personalised = False
    uses_user_vectors = False

    def __init__(self) -> None:
        self.popularity: np.ndarray | None = None  # [n_items] float64

    def fit(self, data: FitData) -> FitSummary:
        self.popularity = item_popularity(data.split)
        return FitSummary()

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        if self.popularity is None:
            raise _not_fitted("most-popular")
        return self.popularity[candidates]


class MatrixFactorisation:
    """implicit ALS or BPR: user factors [n_users, k] . item factors [n_items, k] (``baselines.py``)."""

    personalised = True
    uses_user_vectors = False

    def __init__(self, method: str, config: BaselineConfig, *, seed: int = 0, threads: int = 1):
        if method not in ("als", "bpr"):
            raise ValueError(f"method must be 'als' or 'bpr', got {method!r}")
        self.method = method
        self.config = config
        self.seed = seed
        self.threads = threads
        self.user_factors: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None

    def fit(self, data: FitData) -> FitSummary:
        fit = fit_als if self.method == "als" else fit_bpr
        self.user_factors, self.item_factors = fit(data.split, self.config, self.seed, self.threads)
        return FitSummary()

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        if self.user_factors is None or self.item_factors is None:
            raise _not_fitted(self.method)
        return gather_scores(self.user_factors, self.item_factors, users, candidates)


class NCFRecommender:
    """NCF (``ncf.py``) with one user side ``variant``, trained by ``train.train_ncf``."""

    personalised = True

    def __init__(self, config: NCFConfig, *, variant: str, seed: int = 0):
        if variant not in VARIANTS:
            raise ValueError(f"unknown NCF variant {variant!r}; available: {', '.join(VARIANTS)}")
        self.config = config
        self.variant = variant
        self.seed = seed
        self.uses_user_vectors = variant != "id"
        self.model: NCF | None = None

    @property
    def name(self) -> str:
        return f"{self.config.model}-{self.variant}"

    def fit(self, data: FitData) -> FitSummary:
        if self.uses_user_vectors and data.user_vectors is None:
            raise QuerylearnError(
                f"recommender '{self.name}' learns from user representations; pass FitData.user_vectors "
                "(or use the variant 'id')"
            )
        result = train_ncf(
            data.split,
            self.config,
            variant=self.variant,
            reps=data.user_vectors if self.uses_user_vectors else None,
            valid=data.valid,
            item_vectors=data.item_vectors,
            seed=self.seed,
        )
        self.model = result.model
        return FitSummary(result.best_epoch, result.valid_hr10, result.losses)

    def score(self, users: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise _not_fitted(self.name)
        return score_candidates(self.model, users, candidates)


# Every factory takes the same keywords: the NCF and baseline hyper-parameters, the seed and the
# CPU threads (each method uses what applies to it).


@RECOMMENDERS.register("most-popular")
def _most_popular(*, ncf: NCFConfig, baseline: BaselineConfig, seed: int, threads: int) -> Recommender:
    return MostPopular()


@RECOMMENDERS.register("als")
def _als(*, ncf: NCFConfig, baseline: BaselineConfig, seed: int, threads: int) -> Recommender:
    return MatrixFactorisation("als", baseline, seed=seed, threads=threads)


@RECOMMENDERS.register("bpr")
def _bpr(*, ncf: NCFConfig, baseline: BaselineConfig, seed: int, threads: int) -> Recommender:
    return MatrixFactorisation("bpr", baseline, seed=seed, threads=threads)


def _register_ncf(model: str, variant: str) -> None:
    def factory(*, ncf: NCFConfig, baseline: BaselineConfig, seed: int, threads: int) -> Recommender:
        return NCFRecommender(dataclasses.replace(ncf, model=model), variant=variant, seed=seed)

    RECOMMENDERS.register(f"{model}-{variant}")(factory)


for _model in MODELS:
    for _variant in VARIANTS:
        _register_ncf(_model, _variant)


def make_recommender(
    name: str,
    *,
    ncf: NCFConfig | None = None,
    baseline: BaselineConfig | None = None,
    seed: int = 0,
    threads: int = 1,
) -> Recommender:
    """The recommender registered as ``name`` (a miss lists the available names)."""
    return RECOMMENDERS.get(name)(
        ncf=ncf if ncf is not None else NCFConfig(),
        baseline=baseline if baseline is not None else BaselineConfig(),
        seed=seed,
        threads=threads,
    )
