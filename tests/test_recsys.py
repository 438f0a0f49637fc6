"""recsys: metrics on hand-made rankings, the warm/cold rule and time split, candidates, NCF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from querylearn.errors import QuerylearnError
from querylearn.metrics import ranks_from_scores
from querylearn.recsys.evaluate import candidate_ranks, group_metrics, metrics_from_ranks
from querylearn.recsys.interactions import (
    COLD_MIN_TRAIN,
    COLD_RULE,
    is_cold,
    leave_one_out_split,
    sample_candidates,
)
from querylearn.recsys.ncf import NCF
from querylearn.recsys.train import NCFConfig, score_candidates, train_ncf

# --- metrics -------------------------------------------------------------------------------


def test_metrics_on_hand_made_ranks():
    m = metrics_from_ranks(np.array([0, 3, 7, 12]))
    assert m["n_users"] == 4
    assert m["hr@1"] == 0.25
    assert m["hr@5"] == 0.5
    assert m["hr@10"] == 0.75
    expected = (1.0 + 1.0 / math.log2(5) + 1.0 / math.log2(9) + 0.0) / 4
    assert m["ndcg@10"] == pytest.approx(expected)


def test_empty_group_gives_none_not_nan():
    m = metrics_from_ranks(np.array([], dtype=np.int64))
    assert m == {"n_users": 0, "hr@1": None, "hr@5": None, "hr@10": None, "ndcg@10": None}


def test_candidate_ranks_hand_made_and_ties():
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # held-out item best -> rank 0
            [0.2, 0.5, 0.1, 0.9],  # two higher -> rank 2
            [0.5, 0.5, 0.5, 0.1],  # ties with two: broken by keys
        ]
    )
    no_ties = candidate_ranks(scores[:2])
    assert no_ties.tolist() == [0, 2]
    assert no_ties.tolist() == ranks_from_scores(scores[:2], np.zeros(2, dtype=np.int64)).tolist()
    keys = np.array([[0.0] * 4, [0.0] * 4, [0.5, 0.9, 0.1, 0.7]])
    # row 3: candidate 1 (key 0.9 > 0.5) goes ahead, candidate 2 (0.1) does not, candidate 3 scores lower
    assert candidate_ranks(scores, keys).tolist() == [0, 2, 1]
    # a constant scorer is not rewarded: over many rows the held-out item lands uniformly
    rng = np.random.default_rng(0)
    flat = candidate_ranks(np.zeros((4000, 10)), rng.random((4000, 10)))
    assert abs(flat.mean() - 4.5) < 0.2


def test_group_metrics_split_by_cold_flag():
    g = group_metrics(np.array([0, 20, 0, 1]), np.array([False, False, True, True]))
    assert g["warm"]["n_users"] == 2 and g["warm"]["hr@1"] == 0.5
    assert g["cold"]["n_users"] == 2 and g["cold"]["hr@5"] == 1.0
    assert g["all"]["n_users"] == 4 and g["all"]["hr@10"] == 0.75


# --- split and the cold rule ---------------------------------------------------------------


def _table():
    """Users 0..5 with 1, 2, 3, 4, 5, 0 interactions; rows deliberately out of time order."""
    rows = [
        # (user, item, timestamp)
        (0, 7, 50),
        (1, 3, 20),
        (1, 2, 10),
        (2, 5, 30),
        (2, 4, 10),
        (2, 6, 20),
        (3, 1, 40),
        (3, 0, 10),
        (3, 2, 30),
        (3, 3, 20),
        (4, 9, 5),
        (4, 8, 4),
        (4, 7, 3),
        (4, 6, 2),
        (4, 5, 1),
    ]
    u, i, t = (np.array(c) for c in zip(*rows, strict=True))
    return u, i, t


def test_cold_rule_is_fewer_than_two_training_interactions():
    assert COLD_MIN_TRAIN == 2
    assert is_cold(np.array([0, 1, 2, 5])).tolist() == [True, True, False, False]
    assert "fewer than 2 training interactions" in COLD_RULE


def test_leave_one_out_by_time_and_warm_cold():
    u, i, t = _table()
    s = leave_one_out_split(u, i, t, n_users=6, n_items=10)
    assert s.test_item.tolist() == [7, 3, 5, 1, 9, -1]  # latest interaction per user; user 5 has none
    assert s.valid_item.tolist() == [-1, -1, -1, 2, 8, -1]  # second latest, only with >= 4 interactions
    assert s.n_train.tolist() == [0, 1, 2, 2, 3, 0]
    assert s.cold.tolist() == [True, True, False, False, False, True]
    train = sorted(zip(s.train_user.tolist(), s.train_item.tolist(), strict=True))
    assert train == [(1, 2), (2, 4), (2, 6), (3, 0), (3, 3), (4, 5), (4, 6), (4, 7)]
    assert s.eval_users.tolist() == [0, 1, 2, 3, 4]
    c = s.counts()
    assert (c["n_warm"], c["n_cold"], c["n_cold_zero_train"], c["n_users_without_interactions"]) == (
        3,
        2,
        1,
        1,
    )


def test_equal_timestamps_keep_file_order():
    s = leave_one_out_split(
        np.array([0, 0, 0]), np.array([4, 5, 6]), np.array([1, 1, 1]), n_users=1, n_items=7
    )
    assert s.test_item.tolist() == [6]
    assert s.train_item.tolist() == [4, 5]


def test_cold_fraction_keeps_only_the_earliest_interaction():
    u, i, t = _table()
    s = leave_one_out_split(u, i, t, n_users=6, n_items=10, cold_fraction=1.0, seed=3)
    # the otherwise-warm users 2, 3, 4 become cold with their earliest item only; test item unchanged
    assert s.forced_cold.tolist() == [False, False, True, True, True, False]
    assert s.n_train.tolist() == [0, 1, 1, 1, 1, 0]
    assert s.cold[:5].all()
    assert s.test_item.tolist() == [7, 3, 5, 1, 9, -1]
    assert (s.valid_item == -1).all()
    assert dict(zip(s.train_user.tolist(), s.train_item.tolist(), strict=True)) == {1: 2, 2: 4, 3: 0, 4: 5}
    # a fraction picks round(F * n_warm) users, reproducibly
    a = leave_one_out_split(u, i, t, n_users=6, n_items=10, cold_fraction=0.34, seed=3)
    b = leave_one_out_split(u, i, t, n_users=6, n_items=10, cold_fraction=0.34, seed=3)
    assert a.forced_cold.sum() == 1 and (a.forced_cold == b.forced_cold).all()


# --- candidates ----------------------------------------------------------------------------


def test_candidates_exclude_every_interacted_item_and_repeat_with_the_seed():
    u, i, t = _table()
    s = leave_one_out_split(u, i, t, n_users=6, n_items=40)
    users, c1 = sample_candidates(s, n_negatives=20, seed=5)
    _, c2 = sample_candidates(s, n_negatives=20, seed=5)
    _, c3 = sample_candidates(s, n_negatives=20, seed=6)
    assert users.tolist() == [0, 1, 2, 3, 4]
    assert (c1 == c2).all() and not (c1 == c3).all()
    assert (c1[:, 0] == s.test_item[users]).all()
    for row, user in enumerate(users):
        negs = c1[row, 1:]
        assert len(set(negs.tolist())) == 20
        assert not set(negs.tolist()) & set(s.seen(user).tolist())


def test_too_many_negatives_is_a_one_line_error():
    u, i, t = _table()
    s = leave_one_out_split(u, i, t, n_users=6, n_items=10)
    with pytest.raises(QuerylearnError, match="--negatives 5 or fewer"):
        sample_candidates(s, n_negatives=9, seed=0)


# --- NCF -----------------------------------------------------------------------------------


def _checkerboard(n_users=32, n_items=32):
    """User u likes exactly the items of its own parity ((u + i) even), in a random time order."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        liked = [i for i in range(n_items) if (u + i) % 2 == 0]
        for t, item in enumerate(rng.permutation(liked)):
            rows.append((u, int(item), t))
    u, i, t = (np.array(c) for c in zip(*rows, strict=True))
    return leave_one_out_split(u, i, t, n_users=n_users, n_items=n_items)


@pytest.mark.parametrize("model", ["gmf", "mlp", "neumf"])
def test_ncf_learns_a_checkerboard(model):
    torch.set_num_threads(1)
    split = _checkerboard()
    users, cands = sample_candidates(split, n_negatives=15, seed=0)  # 15 of the 16 other-parity items
    # a low-capacity model must find the parity structure instead of memorising the training cells
    cfg = NCFConfig(
        model=model,
        factors=2,
        mlp_layers=(16, 8, 4),
        epochs=20,
        lr=0.01,
        batch_size=64,
        select_by_valid=False,
    )
    res = train_ncf(split, cfg, variant="id", seed=0)
    ranks = candidate_ranks(score_candidates(res.model, users, cands))
    assert (ranks == 0).mean() >= 0.9  # near-perfect HR@1 (chance is 1/16)


def test_rep_tower_scores_a_user_with_zero_training_interactions():
    torch.set_num_threads(1)
    # user 2 has a single interaction: it is the test item, so it never appears in training
    u = np.array([0, 0, 0, 1, 1, 1, 2])
    i = np.array([0, 1, 2, 3, 4, 5, 1])
    t = np.arange(7)
    split = leave_one_out_split(u, i, t, n_users=3, n_items=8)
    assert split.n_train[2] == 0 and split.cold[2]
    reps = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]], dtype=np.float32)
    res = train_ncf(split, NCFConfig(epochs=3, select_by_valid=False), variant="rep", reps=reps, seed=0)
    scores = score_candidates(res.model, np.array([2]), np.array([[1, 6, 7]]))
    assert np.isfinite(scores).all()
    # the score comes from the representation: another vector gives another score
    other = res.model.reps.clone()
    res.model.reps[2] = torch.tensor([-3.0, 5.0])
    assert not np.allclose(score_candidates(res.model, np.array([2]), np.array([[1, 6, 7]])), scores)
    res.model.reps.copy_(other)


@pytest.mark.parametrize("variant", ["id", "init", "concat", "rep"])
def test_every_variant_forward_shapes(variant):
    reps = None if variant == "id" else torch.randn(5, 3)
    m = NCF(5, 7, variant=variant, reps=reps)
    out = m.score(torch.tensor([0, 4]), torch.tensor([[0, 1, 2], [3, 4, 6]]))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_id_variant_gives_untrained_users_the_mean_vector():
    m = NCF(4, 5, model="gmf", variant="id")
    untrained = torch.tensor([False, False, False, True])
    m.fill_untrained_users(untrained)
    w = m.gmf_user.embedding.weight
    assert torch.allclose(w[3], w[:3].mean(dim=0))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ncf_trains_and_scores_on_cuda():
    split = _checkerboard()
    users, cands = sample_candidates(split, n_negatives=15, seed=0)
    reps = np.random.default_rng(0).standard_normal((split.n_users, 4)).astype(np.float32)
    valid = sample_candidates(split, n_negatives=15, seed=0, which="valid")
    cfg = NCFConfig(epochs=2, device="cuda")
    res = train_ncf(split, cfg, variant="concat", reps=reps, valid=valid, seed=0)
    assert next(res.model.parameters()).is_cuda
    assert np.isfinite(score_candidates(res.model, users, cands)).all()


# --- the typed report and its one table ----------------------------------------------------


def _report():
    from querylearn.recsys.report import (
        CandidateLists,
        ColdstartReport,
        MethodResult,
        NCFInfo,
        SourceInfo,
    )

    def groups(warm, cold):
        empty = {"n_users": 0, "hr@1": None, "hr@5": None, "hr@10": None, "ndcg@10": None}
        w = {"n_users": 3, "hr@1": warm, "hr@5": 0.5, "hr@10": 1.0, "ndcg@10": 0.25}
        c = empty if cold is None else {"n_users": 1, "hr@1": cold, "hr@5": 1.0, "hr@10": 1.0, "ndcg@10": 1.0}
        return {"warm": w, "cold": c, "all": dict(w, n_users=3 + c["n_users"])}

    methods = {
        "most-popular": MethodResult(groups(1 / 3, 0.0), "baseline", 0.04, 2),
        "neumf-rep[a]": MethodResult(
            groups(0.5, None),
            "ncf",
            1.26,
            0,
            NCFInfo("neumf", "rep", "a.parquet", 4, 2, [0.5, 0.7], [0.6, 0.4]),
        ),
    }
    return ColdstartReport(
        querylearn_version="0.1.0",
        dataset="data",
        cold_rule=COLD_RULE,
        cold_min_train=COLD_MIN_TRAIN,
        cold_fraction=0.0,
        counts={"n_eval_users": 4, "n_warm": 3, "n_cold": 1},
        negatives=9,
        seed=0,
        candidates=CandidateLists(4, 10, "ab" * 32, 3),
        tie_rule="ties by keys",
        sources=[SourceInfo("a", "a.parquet", 4)],
        item_init=None,
        config={"negatives": 9},
        methods=methods,
        seconds=1.5,
    )


def test_report_json_has_kind_version_and_round_trips():
    from querylearn.recsys.report import ColdstartReport

    d = _report().to_dict()
    assert (d["kind"], d["schema_version"]) == ("coldstart_report", 1)
    assert list(d["methods"]["most-popular"]) == ["warm", "cold", "all", "kind", "seconds", "tied_targets"]
    assert list(d["methods"]["neumf-rep[a]"])[3:] == [
        "kind", "model", "variant", "source", "dim", "best_epoch", "valid_hr@10", "train_loss", "seconds",
        "tied_targets",
    ]  # fmt: skip
    assert d["candidates"] == {"n_lists": 4, "list_length": 10, "sha256": "ab" * 32, "n_valid_lists": 3}
    assert ColdstartReport.from_dict(d) == _report()
    from querylearn.errors import ArtifactError

    with pytest.raises(ArtifactError, match="expected schema_version 1, found 2"):
        ColdstartReport.from_dict(dict(d, schema_version=2), "r/report.json")


def test_one_row_builder_three_renderings():
    from rich.console import Console

    from querylearn.recsys.report import render_csv, render_markdown, render_table, table_rows, text_rows

    report = _report()
    rows = table_rows(report)
    assert [(r.method, r.group, r.n_users) for r in rows[:4]] == [
        ("most-popular", "warm", 3),
        ("most-popular", "cold", 1),
        ("most-popular", "all", 4),
        ("neumf-rep[a]", "warm", 3),
    ]
    assert render_csv(report).splitlines()[:3] == [
        "method,group,n_users,hr@1,hr@5,hr@10,ndcg@10",
        "most-popular,warm,3,0.333333,0.500000,1.000000,0.250000",
        "most-popular,cold,1,0.000000,1.000000,1.000000,1.000000",
    ]
    assert render_csv(report).splitlines()[5] == "neumf-rep[a],cold,0,,,,"
    md = render_markdown(report).splitlines()
    assert md[:3] == [
        "| method | users | n | HR@1 | HR@5 | HR@10 | NDCG@10 |",
        "|---|---|---|---|---|---|---|",
        "| most-popular | warm | 3 | 0.3333 | 0.5000 | 1.0000 | 0.2500 |",
    ]
    assert md[6] == "| neumf-rep[a] | cold | 0 |  |  |  |  |"
    header, cells = text_rows(report.to_dict(), missing="-")  # a report.json dict works too
    assert header[0] == "method" and cells[4] == ["neumf-rep[a]", "cold", "0", "-", "-", "-", "-"]
    console = Console(width=140, record=True)
    console.print(render_table(report))
    text = console.export_text()
    assert "4 users (3 warm, 1 cold), 1 + 9 candidates, seed 0" in text
    assert "neumf-rep[a]" in text and "0.3333" in text and "1.3" in text  # seconds once per method


@pytest.mark.parametrize("k", [0, 1, 3])
def test_epoch_rows_equal_the_concatenated_epoch(k):
    """NCF builds each batch's (user, item, label) from the positives and the negatives only; the
    rows equal those of the concatenation [positives; repeat(users, k) x negatives] it replaced."""
    from querylearn.recsys.train import epoch_rows

    rng = np.random.default_rng(0)
    pos_u = np.array([0, 0, 1, 2, 2, 2], dtype=np.int64)
    pos_i = np.array([5, 6, 7, 8, 9, 4], dtype=np.int64)
    neg_i = rng.integers(0, 10, size=k * len(pos_u))
    u_all = np.concatenate([pos_u, np.repeat(pos_u, k)])
    i_all = np.concatenate([pos_i, neg_i])
    y_all = np.concatenate([np.ones(len(pos_u)), np.zeros(k * len(pos_u))]).astype(np.float32)
    perm = rng.permutation(len(u_all))
    for s in range(0, len(perm), 4):
        u, i, y = epoch_rows(perm[s : s + 4], pos_u, pos_i, neg_i, k)
        rows = perm[s : s + 4]
        assert u.tolist() == u_all[rows].tolist()
        assert i.tolist() == i_all[rows].tolist()
        assert y.tolist() == y_all[rows].tolist() and y.dtype == np.float32


@pytest.mark.parametrize("variant", ["id", "rep"])
def test_foreach_adam_trains_the_same_parameters_as_the_one_tensor_loop(variant, monkeypatch):
    """ADAM_FOREACH is a speed switch only: every parameter after two epochs equals, bit for bit,
    what the one-tensor-at-a-time Adam gives on the same batches."""
    import querylearn.recsys.train as train_mod

    split = _checkerboard()
    reps = np.random.default_rng(0).normal(size=(split.n_users, 6)).astype(np.float32)
    cfg = NCFConfig(epochs=2, batch_size=16, select_by_valid=False, device="cpu")
    trained = {}
    for foreach in (False, True):
        monkeypatch.setattr(train_mod, "ADAM_FOREACH", foreach)
        res = train_ncf(split, cfg, variant=variant, reps=reps if variant == "rep" else None, seed=3)
        trained[foreach] = ({k: v.clone() for k, v in res.model.state_dict().items()}, res.losses)
    (loop, loop_losses), (batched, batched_losses) = trained[False], trained[True]
    assert loop_losses == batched_losses
    for name, value in loop.items():
        assert torch.equal(value, batched[name]), name
    assert len(loop_losses) == 2 and loop_losses[1] < loop_losses[0]  # it did train
