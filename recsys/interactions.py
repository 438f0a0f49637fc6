"""THE warm/cold rule, the leave-one-out-by-time split and the seeded candidate lists.

Everything that decides which interactions a recommender may train on, which user is cold and
which items a user is ranked against lives here, in one place, so every method in a
``coldstart-eval`` report sees exactly the same split and the same candidate lists.

Split (per user, interactions ordered by timestamp; equal timestamps keep their file order):

- test item = the latest interaction (leave-one-out by time, He et al. 2017 sec. 4.1);
- validation item = the second latest, only when the user has at least
  ``MIN_INTERACTIONS_FOR_VALID`` interactions (so holding it out never turns a warm user cold);
- training interactions = the rest.

Cold rule (``COLD_RULE``): a user is cold when they have fewer than ``COLD_MIN_TRAIN`` training
interactions, warm otherwise. Users with zero training interactions are cold and still scored.
``cold_fraction`` F additionally makes a seeded fraction F of the otherwise-warm users cold by
keeping only their earliest interaction for training (their later interactions except the test
item are dropped from training and get no validation item; their query history, hence their
user representation, is unchanged).

Candidates: the test item (column 0) plus ``n_negatives`` items the user never interacted with
(in any split), sampled without replacement with a generator seeded by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from querylearn.errors import QuerylearnError

COLD_MIN_TRAIN = 2
MIN_INTERACTIONS_FOR_VALID = COLD_MIN_TRAIN + 2  # test + valid + COLD_MIN_TRAIN training rows
COLD_RULE = (
    f"cold = fewer than {COLD_MIN_TRAIN} training interactions after holding out the latest interaction "
    f"(test) and, for users with at least {MIN_INTERACTIONS_FOR_VALID} interactions, the second latest "
    "(validation); users with zero training interactions are cold and still scored; "
    "--cold-fraction F makes a seeded fraction F of the otherwise-warm users cold by keeping only their "
    "earliest interaction for training"
)

# Fixed sub-streams of the user's seed, so each random choice is reproducible on its own.
_STREAM_COLD, _STREAM_TEST, _STREAM_VALID, _STREAM_TIEBREAK = 0, 1, 2, 3


def is_cold(n_train: np.ndarray | int) -> np.ndarray | bool:
    """THE cold rule: fewer than ``COLD_MIN_TRAIN`` training interactions. [U] int -> [U] bool."""
    return np.asarray(n_train) < COLD_MIN_TRAIN


def stream(seed: int, which: int) -> np.random.Generator:
    """An independent generator for one purpose (``_STREAM_*``) derived from the user's seed."""
    return np.random.default_rng([int(seed), int(which)])


@dataclass
class Split:
    """The leave-one-out split of one interaction table.

    Shapes: ``train_user``/``train_item`` [n_train_rows] int64; ``test_item``, ``valid_item``
    [n_users] int64 with -1 where the user has none; ``n_train`` [n_users] int64;
    ``cold``, ``forced_cold`` [n_users] bool; ``seen_ptr`` [n_users + 1] and ``seen_items``
    [n_pairs]: every item the user interacted with (any split), sorted, CSR layout.
    """

    n_users: int
    n_items: int
    train_user: np.ndarray
    train_item: np.ndarray
    test_item: np.ndarray
    valid_item: np.ndarray
    n_train: np.ndarray
    cold: np.ndarray
    forced_cold: np.ndarray
    seen_ptr: np.ndarray
    seen_items: np.ndarray

    @property
    def eval_users(self) -> np.ndarray:
        """Users with a test item (every user with at least one interaction). [n_eval] int64."""
        return np.flatnonzero(self.test_item >= 0)

    @property
    def valid_users(self) -> np.ndarray:
        return np.flatnonzero(self.valid_item >= 0)

    def seen(self, user: int) -> np.ndarray:
        """Sorted items ``user`` interacted with, in any split. [n_u] int64."""
        return self.seen_items[self.seen_ptr[user] : self.seen_ptr[user + 1]]

    def counts(self) -> dict[str, int]:
        ev = self.eval_users
        cold = self.cold[ev]
        return {
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "n_eval_users": int(len(ev)),
            "n_warm": int((~cold).sum()),
            "n_cold": int(cold.sum()),
            "n_cold_zero_train": int((self.n_train[ev] == 0).sum()),
            "n_cold_forced": int(self.forced_cold[ev].sum()),
            "n_users_without_interactions": int(self.n_users - len(ev)),
            "n_train_interactions": int(len(self.train_user)),
            "n_valid_users": int(len(self.valid_users)),
        }


def leave_one_out_split(
    user_index: np.ndarray,
    item_index: np.ndarray,
    timestamp: np.ndarray,
    *,
    n_users: int,
    n_items: int,
    cold_fraction: float = 0.0,
    seed: int = 0,
) -> Split:
    """Split interactions by time and apply the cold rule (module docstring).

    user_index, item_index, timestamp: [n_rows] integer arrays. Returns a ``Split``.
    """
    user_index = np.asarray(user_index, dtype=np.int64)
    item_index = np.asarray(item_index, dtype=np.int64)
    timestamp = np.asarray(timestamp, dtype=np.int64)
    if not (len(user_index) == len(item_index) == len(timestamp)):
        raise QuerylearnError("interactions: user_index, item_index and timestamp differ in length")
    if not 0.0 <= cold_fraction <= 1.0:
        raise QuerylearnError(f"--cold-fraction must lie in [0, 1], got {cold_fraction}")
    if len(user_index) and (user_index.min() < 0 or user_index.max() >= n_users):
        raise QuerylearnError(f"interactions: user_index outside [0, {n_users})")
    if len(item_index) and (item_index.min() < 0 or item_index.max() >= n_items):
        raise QuerylearnError(f"interactions: item_index outside [0, {n_items})")

    rows = np.arange(len(user_index))
    order = np.lexsort((rows, timestamp, user_index))  # by user, then time, then file order
    users_sorted = user_index[order]
    items_sorted = item_index[order]
    n_per_user = np.bincount(users_sorted, minlength=n_users)  # [U]
    start = np.concatenate([[0], np.cumsum(n_per_user)])  # [U + 1]

    # The seeded forced-cold choice is made among users who would otherwise be warm.
    naturally_warm = np.flatnonzero(
        n_per_user - 1 - (n_per_user >= MIN_INTERACTIONS_FOR_VALID) >= COLD_MIN_TRAIN
    )
    n_force = int(round(cold_fraction * len(naturally_warm)))
    forced = np.zeros(n_users, dtype=bool)
    if n_force:
        pick = stream(seed, _STREAM_COLD).permutation(len(naturally_warm))[:n_force]
        forced[naturally_warm[pick]] = True

    test_item = np.full(n_users, -1, dtype=np.int64)
    valid_item = np.full(n_users, -1, dtype=np.int64)
    keep = np.zeros(len(order), dtype=bool)  # training rows, in sorted order
    has = n_per_user > 0
    last = start[1:] - 1
    test_item[has] = items_sorted[last[has]]
    with_valid = (n_per_user >= MIN_INTERACTIONS_FOR_VALID) & ~forced
    valid_item[with_valid] = items_sorted[last[with_valid] - 1]
    n_holdout = has.astype(np.int64) + with_valid  # [U]
    for u in np.flatnonzero(has):
        s = start[u]
        if forced[u]:
            keep[s] = True  # only the earliest interaction trains
        else:
            keep[s : s + n_per_user[u] - n_holdout[u]] = True
    train_user = users_sorted[keep]
    train_item = items_sorted[keep]
    n_train = np.bincount(train_user, minlength=n_users).astype(np.int64)

    # Every item each user interacted with (excluded from their negatives), sorted per user.
    pair_key = np.unique(user_index * n_items + item_index)
    seen_user = pair_key // n_items
    seen_items = pair_key % n_items
    seen_ptr = np.concatenate([[0], np.cumsum(np.bincount(seen_user, minlength=n_users))]).astype(np.int64)

    return Split(
        n_users=n_users,
        n_items=n_items,
        train_user=train_user,
        train_item=train_item,
        test_item=test_item,
        valid_item=valid_item,
        n_train=n_train,
        cold=np.asarray(is_cold(n_train)),
        forced_cold=forced,
        seen_ptr=seen_ptr,
        seen_items=seen_items.astype(np.int64),
    )


def sample_candidates(
    split: Split,
    *,
    n_negatives: int,
    seed: int,
    which: str = "test",
    user_names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate lists: the held-out item in column 0, then ``n_negatives`` never-interacted items.

    which: 'test' (users with a test item) or 'valid' (users with a validation item).
    Returns (users [n], candidates [n, 1 + n_negatives]) int64. Same seed -> same lists.
    Raises QuerylearnError when a user has fewer never-interacted items than ``n_negatives``.
    """
    if n_negatives < 1:
        raise QuerylearnError(f"--negatives must be at least 1, got {n_negatives}")
    if which == "test":
        users, positives, rng = split.eval_users, split.test_item, stream(seed, _STREAM_TEST)
    elif which == "valid":
        users, positives, rng = split.valid_users, split.valid_item, stream(seed, _STREAM_VALID)
    else:
        raise ValueError(f"which must be 'test' or 'valid', got {which!r}")
    n_items = split.n_items
    n_free_all = n_items - np.diff(split.seen_ptr)[users]  # [n]
    if len(users) and n_free_all.min() < n_negatives:
        worst = int(np.argmin(n_free_all))
        u = int(users[worst])
        name = user_names[u] if user_names is not None else str(u)
        limit = int(n_free_all[worst])
        raise QuerylearnError(
            f"user '{name}' has only {limit} items never interacted with, fewer than "
            f"--negatives {n_negatives} (fix: pass --negatives {max(limit, 1)} or fewer)"
        )
    cands = np.empty((len(users), 1 + n_negatives), dtype=np.int64)
    cands[:, 0] = positives[users]
    for row, u in enumerate(users):
        seen = split.seen(u)
        n_free = int(n_free_all[row])
        if n_free <= 4 * n_negatives:
            free = np.setdiff1d(np.arange(n_items), seen, assume_unique=True)
            cands[row, 1:] = rng.choice(free, size=n_negatives, replace=False)
            continue
        # Rejection sampling: cheap when the user saw a small share of the catalogue.
        got = np.empty(0, dtype=np.int64)
        while len(got) < n_negatives:
            draw = rng.integers(0, n_items, size=2 * n_negatives)
            draw = draw[~np.isin(draw, seen)]
            _, first = np.unique(np.concatenate([got, draw]), return_index=True)
            got = np.concatenate([got, draw])[np.sort(first)]
        cands[row, 1:] = got[:n_negatives]
    return users.astype(np.int64), cands


def tiebreak_keys(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Seeded random keys [n, C] that order tied scores; shared by every method of one report."""
    return stream(seed, _STREAM_TIEBREAK).random(shape)


def train_matrix_keys(split: Split) -> np.ndarray:
    """Sorted ``user * n_items + item`` keys of the training pairs (for negative sampling). [n] int64."""
    return np.unique(split.train_user * split.n_items + split.train_item)
