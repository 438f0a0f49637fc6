"""Train NCF with pointwise log loss and sampled negatives (He et al. 2017, sec. 3.1.1, eq. 7).

Each epoch draws ``train_negatives`` (paper: 4) items per training positive, uniformly among
the items the user has no *training* interaction with (as in the paper's code), and minimises
binary cross-entropy with Adam. When validation items exist, the epoch with the best
validation HR@10 (on seeded validation candidate lists) is kept.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from querylearn.errors import ConfigError, QuerylearnError
from querylearn.progress import track
from querylearn.recsys.evaluate import candidate_ranks
from querylearn.recsys.interactions import Split, train_matrix_keys
from querylearn.recsys.ncf import MODELS, NCF


@dataclass
class NCFConfig:
    """NCF hyper-parameters; defaults are the paper's (except epochs, sized for a 2-core minute)."""

    model: str = "neumf"  # gmf | mlp | neumf
    factors: int = 8  # GMF predictive factors
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)  # first = user half + item half
    train_negatives: int = 4  # negatives per positive
    lr: float = 0.001  # Adam
    batch_size: int = 256
    epochs: int = 10
    weight_decay: float = 0.0
    select_by_valid: bool = True  # keep the epoch with the best validation HR@10
    device: str = "auto"  # auto: cuda when available, else cpu (as train-sequence)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model: {self.model!r} is not one of {', '.join(MODELS)}")
        for name in ("factors", "train_negatives", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"lr: must be positive, got {self.lr}")


# Adam's multi-tensor ("foreach") implementation: the same arithmetic per element as the one-tensor-
# at-a-time loop (identical parameters, tests/test_recsys.py), with a few batched ops per step
# instead of a dozen per parameter; 1.07x per NeuMF epoch on ML-100K (docs/coldstart-eval.md).
ADAM_FOREACH = True


@dataclass
class TrainResult:
    model: NCF
    best_epoch: int
    valid_hr10: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def sample_train_negatives(
    users: np.ndarray, n_items: int, train_keys: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One random item per entry of ``users`` [n] that the user has no training interaction with. -> [n]."""
    items = rng.integers(0, n_items, size=len(users))
    todo = np.arange(len(users))
    while len(todo):
        keys = users[todo] * n_items + items[todo]
        pos = np.searchsorted(train_keys, keys)
        hit = (pos < len(train_keys)) & (train_keys[np.minimum(pos, len(train_keys) - 1)] == keys)
        todo = todo[hit]
        items[todo] = rng.integers(0, n_items, size=len(todo))
    return items


def epoch_rows(
    rows: np.ndarray, pos_u: np.ndarray, pos_i: np.ndarray, neg_i: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, labels) [B] of one batch of an epoch's rows, built only for the batch.

    The epoch's rows are the ``n`` training positives (rows 0..n-1, label 1) followed by ``k``
    sampled negatives per positive (row n + j: user ``pos_u[j // k]``, item ``neg_i[j]``, label 0),
    the same rows as the concatenation ``[pos; repeat(pos_u, k) x neg_i]`` without building it:
    memory per epoch is the negatives and the permutation, not (1 + k) n copies of every column.
    """
    n = len(pos_u)
    neg = rows >= n
    j = np.where(neg, rows - n, 0)
    users = np.where(neg, pos_u[j // k] if k else 0, pos_u[np.minimum(rows, n - 1)])
    items = np.where(neg, neg_i[j] if k else 0, pos_i[np.minimum(rows, n - 1)])
    return users, items, (~neg).astype(np.float32)


@torch.no_grad()
def score_candidates(
    model: NCF, users: np.ndarray, candidates: np.ndarray, batch_users: int = 512
) -> np.ndarray:
    """Logits [N, C] for users [N] and candidate lists [N, C]."""
    model.eval()
    device = next(model.parameters()).device
    out = np.empty(candidates.shape, dtype=np.float32)
    for s in range(0, len(users), batch_users):
        u = torch.as_tensor(users[s : s + batch_users], device=device)
        c = torch.as_tensor(candidates[s : s + batch_users], device=device)
        out[s : s + batch_users] = model.score(u, c).float().cpu().numpy()
    return out


def train_ncf(
    split: Split,
    config: NCFConfig,
    *,
    variant: str = "id",
    reps: np.ndarray | None = None,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    item_vectors: np.ndarray | None = None,
    seed: int = 0,
) -> TrainResult:
    """Train one NCF model on ``split``'s training pairs.

    reps: [n_users, D] float32 user representations (variants init, concat, rep).
    valid: (users [n], candidates [n, C]) for model selection, or None.
    item_vectors: [n_items, E] float32 text vectors that initialise the item side, or None.
    """
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng([seed, 7])
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if config.device == "auto" else config.device
    )
    rep_t = None if reps is None else torch.as_tensor(np.asarray(reps, dtype=np.float32))
    model = NCF(
        split.n_users,
        split.n_items,
        model=config.model,
        variant=variant,
        factors=config.factors,
        mlp_layers=tuple(config.mlp_layers),
        reps=rep_t,
        item_vectors=None
        if item_vectors is None
        else torch.as_tensor(np.asarray(item_vectors, dtype=np.float32)),
    ).to(device)
    opt = torch.optim.Adam(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=ADAM_FOREACH
    )
    loss_fn = nn.BCEWithLogitsLoss()
    keys = train_matrix_keys(split)
    pos_u, pos_i = split.train_user, split.train_item
    k = config.train_negatives
    n_pos = len(pos_u)
    use_valid = config.select_by_valid and valid is not None and len(valid[0]) > 0
    best_hr, best_epoch, best_state = -1.0, config.epochs, None
    result = TrainResult(model=model, best_epoch=config.epochs)
    untrained = torch.as_tensor(split.n_train == 0, device=device)
    for epoch in track(range(1, config.epochs + 1), f"training {config.model}"):
        model.train()
        neg_i = sample_train_negatives(np.repeat(pos_u, k), split.n_items, keys, rng)  # [k n_pos]
        perm = rng.permutation(n_pos * (1 + k))  # rows: positives, then k negatives per positive
        total, n = 0.0, 0
        for s in range(0, len(perm), config.batch_size):
            u, i, y = epoch_rows(perm[s : s + config.batch_size], pos_u, pos_i, neg_i, k)
            logits = model(torch.as_tensor(u, device=device), torch.as_tensor(i, device=device))  # [B]
            loss = loss_fn(logits, torch.as_tensor(y, device=device))  # eq. 7 (log loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(u)
            n += len(u)
        mean_loss = total / max(n, 1)
        if not np.isfinite(mean_loss):
            raise QuerylearnError(
                f"NCF ({config.model}, variant {variant}) loss became {mean_loss} in epoch {epoch}; "
                f"lower the learning rate (ncf.lr = {config.lr}) or check the representations for huge values"
            )
        result.losses.append(mean_loss)
        if use_valid:
            snapshot = copy.deepcopy(model.state_dict())
            model.fill_untrained_users(untrained)
            ranks = candidate_ranks(score_candidates(model, *valid))
            hr10 = float((ranks < 10).mean())
            result.valid_hr10.append(hr10)
            if hr10 > best_hr:
                best_hr, best_epoch, best_state = hr10, epoch, copy.deepcopy(model.state_dict())
            model.load_state_dict(snapshot)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.fill_untrained_users(untrained)
    model.eval()
    result.best_epoch = best_epoch
    result.seconds = time.perf_counter() - t0
    return result
