"""The recommender contract: every registered recommender passes the same behavioural tests.

The fixture is a two-block "checkerboard": 16 items in two halves; group A (10 warm users) interacts
with every item of half A, group B (20 warm users, so half B is twice as popular) with every item of
half B, each in a random time order; 3 more users per group have a single interaction (cold, zero
training rows). Each user's held-out test item lies in their own half, and every candidate list is
that item plus the 8 items of the *other* half. Known answers:

- a personalised recommender ranks the held-out item first for (nearly) every warm user of both
  groups, whereas popularity ranks it last for group A;
- most-popular scores every item by its training count, the same list for every user;
- NCF whose users are scored from their representation alone (``rep``, ``init``) also ranks cold
  users' own half first, from a representation that only says which group the user is in.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from querylearn.errors import QuerylearnError
from querylearn.recsys.baselines import BaselineConfig
from querylearn.recsys.evaluate import candidate_ranks
from querylearn.recsys.interactions import leave_one_out_split
from querylearn.recsys.recommenders import RECOMMENDERS, FitData, make_recommender
from querylearn.recsys.train import NCFConfig

HALF = 8
N_ITEMS = 2 * HALF
GROUPS = ((10, 3), (20, 3))  # per group: warm users, cold users
# Sized for the fixture: a few hundred Adam steps; the BPR step is larger than the default for 180 rows.
NCF = NCFConfig(factors=4, mlp_layers=(32, 16, 8), epochs=10, lr=0.02, batch_size=64, select_by_valid=False)
BASELINE = BaselineConfig(bpr_iterations=200, bpr_learning_rate=0.05)
EXPECTED_NAMES = {
    "most-popular",
    "als",
    "bpr",
    *(f"{m}-{v}" for m in ("gmf", "mlp", "neumf") for v in ("id", "init", "concat", "rep")),
}
COLD_FROM_VECTORS = {"rep", "init"}  # NCF user sides that score an untrained user from r_u alone


class Checkerboard:
    """The fixture: split, per-user group, test candidate lists, group-revealing user vectors."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        rows, group = [], []
        for g, (n_warm, n_cold) in enumerate(GROUPS):
            items = np.arange(HALF) + g * HALF
            for k in range(n_warm + n_cold):
                n = HALF if k < n_warm else 1
                user = len(group)
                rows += [(user, int(i), t) for t, i in enumerate(rng.choice(items, size=n, replace=False))]
                group.append(g)
        u, i, t = (np.array(c) for c in zip(*rows, strict=True))
        self.rows_item = i
        self.split = leave_one_out_split(u, i, t, n_users=len(group), n_items=N_ITEMS)
        self.group = np.array(group)
        self.users = self.split.eval_users  # every user
        self.candidates = self._lists(self.users, self.split.test_item)
        valid_users = self.split.valid_users
        self.valid = (valid_users, self._lists(valid_users, self.split.valid_item))
        # r_u: the one-hot group plus noise, so the representation is informative but not an ID
        noise = 0.1 * rng.standard_normal((len(group), 2))
        self.user_vectors = (np.eye(2)[self.group] + noise).astype(np.float32)
        self.keys = np.random.default_rng(1).random(self.candidates.shape)  # shared tie keys

    def _lists(self, users: np.ndarray, held_out: np.ndarray) -> np.ndarray:
        """[n, 1 + HALF]: the held-out item, then every item of the user's other half."""
        other = (1 - self.group[users])[:, None] * HALF + np.arange(HALF)[None, :]
        return np.concatenate([held_out[users][:, None], other], axis=1)

    def data(self) -> FitData:
        return FitData(self.split, valid=self.valid, user_vectors=self.user_vectors)

    def top1(self, scores: np.ndarray) -> np.ndarray:
        """[n] bool: the held-out item ranked first (ties ordered by the shared seeded keys)."""
        return candidate_ranks(scores, self.keys) == 0


@pytest.fixture(scope="module")
def board() -> Checkerboard:
    return Checkerboard()


def _make(name: str, seed: int = 0):
    return make_recommender(name, ncf=NCF, baseline=BASELINE, seed=seed, threads=1)


@pytest.fixture(scope="module", params=RECOMMENDERS.names())
def fitted(request, board):
    """(name, recommender fitted on the checkerboard, its test scores [n, 1 + HALF])."""
    torch.set_num_threads(1)
    rec = _make(request.param)
    rec.fit(board.data())
    return request.param, rec, rec.score(board.users, board.candidates)


# --- the registry ---------------------------------------------------------------------------


def test_registry_holds_every_method_and_a_miss_lists_them():
    assert set(RECOMMENDERS.names()) == EXPECTED_NAMES
    with pytest.raises(
        QuerylearnError, match=r"unknown recommender 'neumf-foo'; available: als, bpr, gmf-concat"
    ):
        RECOMMENDERS.get("neumf-foo")


def test_ncf_factory_takes_the_model_from_the_name():
    rec = make_recommender("gmf-rep", ncf=NCFConfig(model="neumf"))
    assert rec.config.model == "gmf" and rec.variant == "rep" and rec.uses_user_vectors


# --- the contract, for every registered recommender -----------------------------------------


def test_scores_have_the_candidates_shape_and_are_finite(fitted, board):
    _, _, scores = fitted
    assert scores.shape == board.candidates.shape
    assert np.issubdtype(scores.dtype, np.floating) and np.isfinite(scores).all()


def test_a_score_depends_only_on_its_user_and_item(fitted, board):
    """Reordering the candidates reorders the scores; scoring a subset of users gives the same rows.

    Up to float32 rounding: a matrix product over another batch shape may add in another order.
    """
    _, rec, scores = fitted
    same = {"rtol": 1e-5, "atol": 1e-6}
    perm = np.random.default_rng(2).permutation(board.candidates.shape[1])
    np.testing.assert_allclose(rec.score(board.users, board.candidates[:, perm]), scores[:, perm], **same)
    rows = np.array([5, 0, 17])
    np.testing.assert_allclose(rec.score(board.users[rows], board.candidates[rows]), scores[rows], **same)


def test_the_same_seed_gives_the_same_scores(fitted, board):
    name, _, scores = fitted
    again = _make(name)
    again.fit(board.data())
    np.testing.assert_array_equal(again.score(board.users, board.candidates), scores)


def test_known_answer_on_the_checkerboard(fitted, board):
    name, rec, scores = fitted
    warm = ~board.split.cold[board.users]
    group = board.group[board.users]
    first = board.top1(scores)
    if rec.personalised:
        for g in (0, 1):  # chance is 1 / 9; popularity gets group A's users all wrong
            assert first[warm & (group == g)].mean() >= 0.9, f"{name}: group {g}"
    else:
        train_count = np.bincount(board.split.train_item, minlength=N_ITEMS)  # by hand from the split
        np.testing.assert_array_equal(scores, train_count[board.candidates])
        assert not first[group == 0].any()  # half B is twice as popular


def test_representation_scores_cold_users(fitted, board):
    name, rec, scores = fitted
    if name.rsplit("-", 1)[-1] not in COLD_FROM_VECTORS:
        pytest.skip(f"{name} does not score untrained users from their representation alone")
    cold = board.split.n_train[board.users] == 0
    assert cold.sum() == 6
    assert board.top1(scores)[cold].all()


# --- the contract can fail ------------------------------------------------------------------


def test_the_known_answers_tell_models_apart(board):
    """Popularity fails the personalised answer and a constant scorer fails both: the checks can fail."""
    pop = _make("most-popular")
    pop.fit(board.data())
    warm_a = ~board.split.cold[board.users] & (board.group[board.users] == 0)
    assert board.top1(pop.score(board.users, board.candidates))[warm_a].mean() == 0.0
    constant = np.zeros(board.candidates.shape)
    assert board.top1(constant)[warm_a].mean() < 0.9  # ties go to the shared keys: chance level
    counts = np.bincount(board.split.train_item, minlength=N_ITEMS)[board.candidates]
    assert not np.array_equal(constant, counts)


def test_representation_models_need_user_vectors(board):
    rec = _make("neumf-rep")
    with pytest.raises(QuerylearnError, match="user representations"):
        rec.fit(FitData(board.split))


def test_score_before_fit_is_an_error(board):
    for name in ("most-popular", "als", "neumf-id"):
        with pytest.raises(QuerylearnError, match="before score"):
            _make(name).score(board.users, board.candidates)
