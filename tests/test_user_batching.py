"""Per-user batching of multi_target tasks (``multi_target_batching = "user"``, docs/train-sequence.md).

Known answers: the batches of a hand-made user column; every train pair exactly once per epoch;
the user-batched loss and gradients equal the pair-batched ones over the same pairs; every strategy
trains in user mode.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from querylearn.config import load_config
from querylearn.continual import fit as fit_module
from querylearn.continual.config import TrainConfig
from querylearn.continual.data import task_batches, task_data, user_batches
from querylearn.continual.run import train_sequence
from querylearn.continual.strategies import STRATEGIES
from querylearn.data.dataset import load_dataset
from querylearn.errors import ConfigError
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder

TINY = {"model.channels": 16, "model.dilations": [1, 2], "threads": 1}


def test_user_batches_known_answer():
    users = np.array([2, 0, 2, 1, 0, 2])  # rows of user 0: 1, 4; user 1: 3; user 2: 0, 2, 5
    got = user_batches(users, 3, None, drop_last=False)  # users in order 0, 1, 2: starts 0, 2, 3
    assert [b for b, _ in got] == [0.0, 1.0]
    assert [r.tolist() for _, r in got] == [[1, 4, 3], [0, 2, 5]]
    # budget 4: starts 0, 2, 3 all in window 0 -> one batch of 6 rows (a batch ends with a whole user)
    assert [r.tolist() for _, r in user_batches(users, 4, None, drop_last=False)] == [[1, 4, 3, 0, 2, 5]]
    # budget 2: windows 0, 1, 1 -> users 1 and 2 together; drop_last drops window 2 (none here: n % 2 = 0)
    assert [r.tolist() for _, r in user_batches(users, 2, None, drop_last=True)] == [[1, 4], [3, 0, 2, 5]]
    # n = 5, budget 2: user 2 starts at row 4, the incomplete window 2 -> dropped with drop_last
    five = np.array([0, 0, 1, 1, 2])
    assert [r.tolist() for _, r in user_batches(five, 2, None, drop_last=True)] == [[0, 1], [2, 3]]
    assert [r.tolist() for _, r in user_batches(five, 2, None, drop_last=False)] == [[0, 1], [2, 3], [4]]
    assert user_batches(np.zeros(0, dtype=np.int64), 4, None, drop_last=False) == []


def test_user_batches_cover_every_pair_once_with_whole_users():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 300, size=5000)  # 5,000 pairs of about 300 users, 1..40 targets each
    budget = 256
    got = user_batches(users, budget, np.random.default_rng(0), drop_last=False)
    rows = np.concatenate([r for _, r in got])
    assert np.array_equal(np.sort(rows), np.arange(len(users)))  # every pair exactly once
    seen: set[int] = set()
    for _, r in got:
        batch_users = set(users[r].tolist())
        assert not batch_users & seen  # each user in one batch only: encoded once per epoch
        seen |= batch_users
    assert seen == set(users.tolist())
    assert len(got) <= -(-len(users) // budget)  # no more steps than pair batches
    before = np.cumsum([0] + [len(r) for _, r in got])[:-1]
    assert [b for b, _ in got] == (before / budget).tolist()  # b = rows before the batch / B (Eq. 19)
    sizes = np.array([len(r) for _, r in got])
    assert abs(sizes.mean() - len(users) / len(got)) < 1e-9 and sizes.max() < budget + 40


def test_pair_mode_and_other_tasks_keep_pair_batches(toy):
    ds = load_dataset(toy)
    t2, t3 = task_data(ds, "T2"), task_data(ds, "T3")
    for t, mode in ((t2, "pair"), (t3, "user")):
        got = task_batches(t, 64, np.random.default_rng(0), False, mode)
        order = np.random.default_rng(0).permutation(t.n("train"))
        assert [b for b, _ in got] == list(range(len(got)))
        assert np.array_equal(np.concatenate([r for _, r in got]), order)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_user_loss_and_gradients_equal_pair_loss(toy):
    ds = load_dataset(toy)
    full = task_data(ds, "T2")  # two targets per user: drop one of every third user's (1 or 2 targets)
    keep = np.flatnonzero((np.arange(full.n("train")) % 6) != 5)
    users, labels = dict(full.users), dict(full.labels)
    users["train"], labels["train"] = full.users["train"][keep], full.labels["train"][keep]
    t = dataclasses.replace(full, users=users, labels=labels)
    sequences = torch.as_tensor(np.asarray(ds.sequences, dtype=np.int64))
    torch.manual_seed(0)
    model = UserEncoder(len(ds.vocab), ModelConfig(channels=16, dilations=(1, 2)), masking="relation")
    model.add_task("T1", len(ds.vocab))
    model.add_task("T2", t.n_classes)
    model.train()
    # some users' rows: the first per-user batch, and the same pairs shuffled as one pair batch
    _, rows = user_batches(t.users["train"], 40, np.random.default_rng(1), drop_last=False)[0]
    counts = np.unique(t.users["train"][rows], return_counts=True)[1]
    assert len(counts) > 5 and set(counts.tolist()) == {1, 2}  # a per-user mean would differ
    pair_rows = np.random.default_rng(2).permutation(rows)
    results = {}
    for mode, idx in (("pair", pair_rows), ("user", rows)):
        ctx = SimpleNamespace(s=7.5, config=SimpleNamespace(multi_target_batching=mode), generator=None)
        model.zero_grad(set_to_none=True)
        batch, loss, _ = fit_module._batch_loss(model, t, idx, sequences, ctx)
        loss.backward()
        results[mode] = (float(loss.detach()), _grads(model))
    (loss_p, g_p), (loss_u, g_u) = results["pair"], results["user"]
    assert abs(loss_p - loss_u) < 1e-6
    assert g_p.keys() == g_u.keys() and len(g_p) > 5
    for name in g_p:
        torch.testing.assert_close(g_u[name], g_p[name], rtol=0, atol=1e-6, msg=name)
    # the pair-mean CE by hand: -mean over pairs of log softmax(z_u)[target]
    with torch.no_grad():
        logits = model(sequences[torch.as_tensor(t.users["train"][rows])], "T2", s=7.5).logits
        targets = torch.as_tensor(t.labels["train"][rows])
        by_hand = -torch.log_softmax(logits, -1)[torch.arange(len(rows)), targets]
    assert abs(float(by_hand.mean()) - loss_u) < 1e-6


def test_user_mode_epoch_sees_every_pair_once_and_each_user_once(toy, tmp_path, monkeypatch):
    seen: list[tuple[str, np.ndarray]] = []
    original = fit_module._batch_loss

    def recording(model, t, idx, sequences, ctx):
        seen.append((t.name, np.asarray(idx).copy()))
        return original(model, t, idx, sequences, ctx)

    monkeypatch.setattr(fit_module, "_batch_loss", recording)
    over = {**TINY, "strategy": "teracon", "tasks": ["T1", "T2"], "t1.max_epochs": 1, "t2.max_epochs": 2,
            "t2.patience": 5, "t2.batch_size": 48, "multi_target_batching": "user"}  # fmt: skip
    m = train_sequence(toy, tmp_path / "run", config=load_config(TrainConfig, None, over))
    t2 = task_data(load_dataset(toy), "T2")
    t2_batches = [idx for name, idx in seen if name == "T2"]
    per_epoch = len(t2_batches) // 2
    assert m["skipped_steps"] == [0, 0] and len(t2_batches) == 2 * per_epoch > 2
    for epoch in (t2_batches[:per_epoch], t2_batches[per_epoch:]):
        rows = np.concatenate(epoch)
        assert np.array_equal(np.sort(rows), np.arange(t2.n("train")))
        users = [set(t2.users["train"][idx].tolist()) for idx in epoch]
        assert sum(len(u) for u in users) == len(set().union(*users))  # each user encoded once
    assert t2_batches[0].tolist() != t2_batches[per_epoch].tolist()  # reshuffled per epoch


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_trains_in_user_mode(name, toy, tmp_path):
    over = {**TINY, "strategy": name, "t1.max_epochs": 1, "t2.max_epochs": 1, "later.max_epochs": 1,
            "t2.batch_size": 64, "later.batch_size": 64, "multi_target_batching": "user"}  # fmt: skip
    m = train_sequence(toy, tmp_path / name, config=load_config(TrainConfig, None, over))
    assert m["tasks"] == ["T1", "T2", "T3"] and m["skipped_steps"] == [0, 0, 0]
    assert all(0.0 <= v <= 1.0 for row in m["R"] for v in row if v is not None)


def test_bad_batching_value_is_a_config_error():
    with pytest.raises(ConfigError, match="multi_target_batching"):
        load_config(TrainConfig, None, {"multi_target_batching": "users"})


def test_cli_set_user_batching(toy, tmp_path):
    from querylearn.cli.main import main

    out = tmp_path / "cli"
    with pytest.raises(SystemExit) as done:
        main(["train-sequence", "--data", str(toy), "--out", str(out), "--tasks", "T1,T2", "--epochs", "1",
              "--set", 'multi_target_batching="user"', "--set", "model.channels=16",
              "--set", "model.dilations=[1, 2]", "--set", "t2.batch_size=64", "--threads", "1",
              "--no-progress"])  # fmt: skip
    assert done.value.code == 0
    assert 'multi_target_batching = "user"' in (out / "config.toml").read_text(encoding="utf-8")
    assert (out / "metrics.json").is_file()
