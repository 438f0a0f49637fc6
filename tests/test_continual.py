"""Continual loop, retention maths and strategies on tiny fixtures with known answers."""

import json
import math

import numpy as np
import pytest
import torch

from querylearn.config import load_config
from querylearn.continual import retention
from querylearn.continual.config import TrainConfig
from querylearn.continual.data import task_data
from querylearn.continual.evaluation import evaluate
from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.run import train_sequence
from querylearn.continual.strategies import STRATEGIES, build_strategy
from querylearn.data.dataset import TaskArrays, load_dataset, write_dataset
from querylearn.data.splits import permuted_split
from querylearn.data.vocab import QueryVocab
from querylearn.errors import ConfigError, QuerylearnError
from querylearn.metrics import ranking_metrics, ranks_from_scores
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder

TINY = {"model.channels": 16, "model.dilations": [1, 2], "threads": 1}


def make_conflict_dataset(out, n_users=400, n_queries=10, seq_len=4, seed=0):
    """T1 next_query over random sequences; T2 = last query % 5; T3 = first query % 5.

    T2 and T3 are both fully determined by the sequence (a correct model scores 1.0) but need
    different information at the last position, so fine-tuning on T3 overwrites T2.
    """
    rng = np.random.default_rng(seed)
    vocab = QueryVocab(["<pad>", "<unk>"] + [f"q{i}" for i in range(n_queries)], [0, 0] + [1] * n_queries)
    raw = rng.integers(0, n_queries, size=(n_users, seq_len))
    ids = (raw + 2).astype(np.int32)
    split = permuted_split(n_users, seed)
    users = np.arange(n_users)
    l2, l3 = raw[:, -1] % 5, raw[:, 0] % 5
    names = [str(i) for i in range(5)]
    tasks = [
        TaskArrays("T1", "next_query", "mrr@5", users, ids[:, -1].astype(np.int64), split, len(vocab)),
        TaskArrays(
            "T2", "classify", "accuracy", users, l2, split, 5, names, np.bincount(l2, minlength=5).tolist()
        ),
        TaskArrays(
            "T3", "classify", "accuracy", users, l3, split, 5, names, np.bincount(l3, minlength=5).tolist()
        ),
    ]
    write_dataset(
        out,
        source="fixture",
        synthetic=True,
        vocab=vocab,
        user_ids=[f"u{i}" for i in users],
        sequences=ids,
        user_split=split,
        tasks=tasks,
    )
    return out


CONFLICT = {
    **TINY,
    "t1.max_epochs": 2,
    "t2.max_epochs": 30,
    "later.max_epochs": 30,
    "t2.batch_size": 32,
    "later.batch_size": 32,
    "t2.lr": 1e-2,
    "later.lr": 1e-2,
    "t1.patience": 30,
    "t2.patience": 30,
    "later.patience": 30,
}


@pytest.fixture(scope="module")
def conflict(tmp_path_factory):
    return make_conflict_dataset(tmp_path_factory.mktemp("conflict") / "ds")




# ---- retention maths ------------------------------------------------------------------------
def test_rho_within_bounds():
    torch.manual_seed(0)
    low, high = retention.rho_bounds(6.0)
    assert low == pytest.approx(0.0025, abs=1e-4) and high == 0.5
    teacher = torch.rand(4, 6, 32)  # positive masks [P, M, C]
    new = torch.rand(6, 32)
    rho = retention.rho_from_masks(teacher, new)
    assert rho.shape == (4,)
    assert bool(((rho >= low - 1e-7) & (rho < high)).all())
    # identical masks: cos = 1 -> rho = 1 - σ(6) (the lower bound)
    same = retention.rho_from_masks(new[None], new)
    assert float(same[0]) == pytest.approx(low, abs=1e-6)
    # nearly orthogonal positive masks approach the upper bound
    a = torch.zeros(1, 1, 4) + 1e-6
    a[0, 0, 0] = 1.0
    b = torch.zeros(1, 4) + 1e-6
    b[0, 1] = 1.0
    assert 0.49 < float(retention.rho_from_masks(a, b)[0]) < 0.5


def test_rho_matches_per_layer_loop():
    torch.manual_seed(1)
    teacher, new = torch.rand(3, 4, 8), torch.rand(4, 8)
    rho = retention.rho_from_masks(teacher, new)
    for j in range(3):
        vals = [
            torch.sigmoid(
                6 * torch.nn.functional.cosine_similarity(teacher[j, layer], new[layer], dim=0, eps=1e-6)
            )
            for layer in range(4)
        ]
        assert float(rho[j]) == pytest.approx(1 - float(torch.stack(vals).mean()), abs=1e-6)


def test_sample_sizes_never_empty():
    assert retention.sample_sizes([0.0025, 0.5, 0.9], 100, min_samples=1) == [1, 50, 90]
    assert retention.sample_sizes([0.0025], 10, min_samples=3) == [3]
    assert retention.sample_sizes([1.0], 7) == [7]


def test_retention_loss_known_value():
    s = [torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0], [2.0]])]
    t = [torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0], [0.0]])]
    w = retention.retention_weights(torch.tensor([0.1, 0.3]))  # 0.25, 0.75
    # MSE_0 = (1 + 4) / 2 = 2.5 ; MSE_1 = (0 + 4) / 2 = 2 -> 0.25 * 2.5 + 0.75 * 2
    assert float(retention.retention_loss(s, t, w)) == pytest.approx(2.125)


# ---- metrics --------------------------------------------------------------------------------
def test_metrics_on_hand_made_rankings():
    m = ranking_metrics(np.array([0, 4, 5]))
    assert m["mrr@5"] == pytest.approx((1 + 0.2 + 0) / 3)
    assert m["hr@5"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(1 / 3)


def test_evaluate_counts_every_row_and_ranks_like_metrics(toy):
    torch.manual_seed(0)
    ds = load_dataset(toy)
    cfg = load_config(TrainConfig, None, TINY)
    t2 = task_data(ds, "T2")
    model = UserEncoder(len(ds.vocab), cfg.model, masking="relation")
    model.add_task("T1", len(ds.vocab))
    model.add_task("T2", t2.n_classes)
    seqs = torch.as_tensor(ds.sequences.astype(np.int64))
    m = evaluate(model, t2, "test", seqs, config=cfg, batch_size=7)  # batch does not divide n
    assert m["n"] == t2.n("test")
    with torch.no_grad():
        logits = model(seqs[t2.users["test"]], "T2", s=cfg.smax).logits.numpy()
    ranks = ranks_from_scores(logits, t2.labels["test"])
    assert m["mrr@5"] == pytest.approx(ranking_metrics(ranks)["mrr@5"], abs=1e-9)


# ---- the forgetting fixture -------------------------------------------------------------------
def _run(data, out, **over):
    cfg = load_config(TrainConfig, None, {**CONFLICT, **over})
    return train_sequence(data, out, config=cfg)


def test_finetune_forgets_and_teracon_retains(conflict, tmp_path):
    ft = _run(conflict, tmp_path / "ft", strategy="finetune")
    tc = _run(conflict, tmp_path / "tc", strategy="teracon")
    for m in (ft, tc):
        assert m["R"][1][1] >= 0.9 and m["R"][2][2] >= 0.9  # both tasks are learnable (known answer 1.0)
        assert m["R"][0][1] is None and m["R"][1][2] is None
    assert ft["R"][2][1] <= 0.6, ft["R"]  # finetune forgets T2 after T3
    assert tc["R"][2][1] >= 0.75, tc["R"]  # teracon keeps it
    assert tc["bwt"]["per_task"][1] > ft["bwt"]["per_task"][1] + 0.2


def test_single_models_never_change(conflict, tmp_path):
    m = _run(conflict, tmp_path / "single", strategy="single", **{"t2.max_epochs": 5, "later.max_epochs": 5})
    R = m["R"]
    assert R[1][0] == R[0][0] and R[2][0] == R[0][0] and R[2][1] == R[1][1]
    assert m["bwt"]["mean"] == 0.0 and m["single"] == [R[i][i] for i in range(3)]
    assert m["fwt"]["per_task"] == [None, 0.0, 0.0]


def test_multitask_learns_all_tasks_jointly(conflict, tmp_path):
    m = _run(conflict, tmp_path / "mt", strategy="multitask", **{"t2.max_epochs": 15, "later.max_epochs": 15})
    assert m["R"][2][1] >= 0.8 and m["R"][2][2] >= 0.8


# ---- run management -----------------------------------------------------------------------
class _Stop(Exception):
    pass


def test_resume_after_interrupt_gives_same_metrics(toy, tmp_path):
    over = {
        **TINY,
        "t1.max_epochs": 2,
        "t2.max_epochs": 2,
        "later.max_epochs": 2,
        "t2.batch_size": 64,
        "later.batch_size": 64,
        "with_single": True,
    }
    cfg = load_config(TrainConfig, None, over)
    full = train_sequence(toy, tmp_path / "full", config=cfg)

    def stop_after_t2(position, name, metrics):
        if position == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_sequence(toy, tmp_path / "cut", config=cfg, on_task_end=stop_after_t2)
    assert not (tmp_path / "cut" / "checkpoints" / "03-T3.json").exists()
    resumed = train_sequence(resume=tmp_path / "cut")
    for key in ("R", "R_detail", "fwt", "bwt", "single", "tasks"):
        assert resumed[key] == full[key], key
    # a finished run grows by one task without retraining the others
    short = load_config(TrainConfig, None, {**over, "tasks": ["T1", "T2"]})
    train_sequence(toy, tmp_path / "short", config=short)
    grown = train_sequence(resume=tmp_path / "short", add_task="T3")
    assert grown["tasks"] == ["T1", "T2", "T3"]
    assert grown["R"][:2] == full["R"][:2]
    assert len(grown["R"]) == 3 and grown["R"][2][2] is not None
    with pytest.raises(ConfigError, match="already has this task"):
        train_sequence(resume=tmp_path / "short", add_task="T3")


def test_existing_run_dir_is_refused(toy, tmp_path):
    cfg = load_config(TrainConfig, None, {**TINY, "tasks": ["T1"], "t1.max_epochs": 1})
    train_sequence(toy, tmp_path / "r", config=cfg)
    with pytest.raises(QuerylearnError, match="--resume"):
        train_sequence(toy, tmp_path / "r", config=cfg)


def test_task_order_rules(toy, tmp_path):
    with pytest.raises(ConfigError, match="must come first"):
        train_sequence(
            toy, tmp_path / "a", config=load_config(TrainConfig, None, {**TINY, "tasks": ["T2", "T1"]})
        )
    with pytest.raises(ConfigError, match="not in"):
        train_sequence(
            toy, tmp_path / "b", config=load_config(TrainConfig, None, {**TINY, "tasks": ["T1", "T9"]})
        )


def test_bad_config_key_is_rejected(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[teracon]\nalfa = 0.5\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'teracon.alfa'.*alpha"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match="min_kr_samples"):
        load_config(TrainConfig, None, {"teracon.min_kr_samples": 0})


def test_registry_lists_strategies():
    names = STRATEGIES.names()
    for name in (
        "teracon",
        "finetune",
        "single",
        "multitask",
        "hat",
        "conure",
        "teracon-noretention",
        "teracon-rho1",
        "teracon-plain",
    ):
        assert name in names
    with pytest.raises(QuerylearnError, match="available: .*teracon"):
        build_strategy("ewc", TrainConfig())
    cfg = TrainConfig()
    assert build_strategy("teracon-noretention", cfg).cfg.alpha == 0.0
    assert build_strategy("teracon-rho1", cfg).cfg.rho_mode == "all"
    assert build_strategy("teracon-plain", cfg).masking == "plain"


# ---- hook contract ------------------------------------------------------------------------
class _Recorder(ContinualStrategy):
    name = "recorder"
    masking = "relation"

    def __init__(self, config):
        super().__init__(config)
        self.calls = []

    def before_task(self, ctx, task):
        self.calls.append(("before_task", task.name))

    def extra_losses(self, ctx, batch, out):
        self.calls.append(("extra_losses", batch.task))
        assert 0 < ctx.s <= ctx.config.smax + 1e-6
        return {"zero": out.logits.sum() * 0.0}

    def after_backward(self, ctx):
        self.calls.append(("after_backward", None))

    def after_step(self, ctx):
        self.calls.append(("after_step", None))

    def after_task(self, ctx, task):
        self.calls.append(("after_task", task.name))


def test_every_hook_is_called(toy, tmp_path, monkeypatch):
    rec = {}

    def factory(config):
        rec["s"] = _Recorder(config)
        return rec["s"]

    monkeypatch.setitem(STRATEGIES._items, "recorder", factory)
    cfg = load_config(
        TrainConfig,
        None,
        {
            **TINY,
            "strategy": "recorder",
            "tasks": ["T1", "T3"],
            "t1.max_epochs": 1,
            "t2.max_epochs": 1,
            "t2.batch_size": 64,
        },
    )
    m = train_sequence(toy, tmp_path / "rec", config=cfg)
    kinds = [c[0] for c in rec["s"].calls]
    for hook in ("before_task", "extra_losses", "after_backward", "after_step", "after_task"):
        assert hook in kinds
    assert kinds[0] == "before_task" and kinds[-1] == "after_task"
    assert kinds.count("before_task") == 2 and kinds.count("extra_losses") == kinds.count("after_step")
    assert m["strategy"] == "recorder"


def test_metrics_json_fields(toy, tmp_path):
    cfg = load_config(
        TrainConfig,
        None,
        {
            **TINY,
            "t1.max_epochs": 1,
            "t2.max_epochs": 1,
            "later.max_epochs": 1,
            "t2.batch_size": 64,
            "later.batch_size": 64,
            "next_query.sampled_softmax": 5,
            "next_query.ignore_padding": True,
        },
    )
    train_sequence(toy, tmp_path / "m", config=cfg)
    m = json.loads((tmp_path / "m" / "metrics.json").read_text())
    for key in ("strategy", "tasks", "R", "metric", "fwt", "bwt", "seconds_per_epoch"):
        assert key in m
    assert m["metric"] == ["mrr@5", "mrr@5", "accuracy"]
    for i, row in enumerate(m["R"]):
        for j, v in enumerate(row):
            assert (v is None) == (j > i)
            assert v is None or 0.0 <= v <= 1.0
    assert all(v > 0 for v in m["seconds_per_epoch"])
    csv = (tmp_path / "m" / "R.csv").read_text().splitlines()
    assert csv[0] == "after,T1,T2,T3" and csv[1].startswith("T1,") and csv[1].endswith(",,")
    logs = (tmp_path / "m" / "logs" / "02-T2.jsonl").read_text().splitlines()
    assert json.loads(logs[0])["epoch"] == 1
    assert not math.isnan(json.loads(logs[0])["train_loss"])


# ---- CONURE and HAT -------------------------------------------------------------------------
def test_conure_past_outputs_bit_identical(conflict, tmp_path):
    from querylearn.continual.checkpoint import load_checkpoint

    short = {"t1.max_epochs": 2, "t2.max_epochs": 4, "later.max_epochs": 4}
    m = _run(conflict, tmp_path / "conure", strategy="conure", **short)
    R = m["R"]
    assert R[1][0] == R[0][0] and R[2][0] == R[0][0] and R[2][1] == R[1][1]
    assert m["bwt"]["mean"] == 0.0
    assert R[1][1] >= 0.6  # T2 is still learnt with the free capacity
    ds = load_dataset(conflict)
    ids = torch.as_tensor(ds.sequences.astype(np.int64))
    after_t2, _, _ = load_checkpoint(tmp_path / "conure" / "checkpoints" / "02-T2.json")
    after_t3, _, _ = load_checkpoint(tmp_path / "conure" / "checkpoints" / "03-T3.json")
    with torch.no_grad():
        for task in ("T1", "T2"):
            a = after_t2(ids, task, s=50.0).logits
            b = after_t3(ids, task, s=50.0).logits
            assert torch.equal(a, b), task
        # the masks are disjoint and shrink as in CONURE's official code: 30%, then 21% of each tensor
        m1, m2, m3 = (after_t3.weight_masks.mask(n) for n in ("T1", "T2", "T3"))
        assert not (m1 & m2).any() and not (m1 & m3).any() and not (m2 & m3).any()
        n = m1[0].numel()
        assert int(m1[0].sum()) == int(0.3 * n) and int(m2[0].sum()) == int(0.7 * 0.3 * n)
        # the last task's weights changed (it was trained)
        assert not torch.equal(after_t2.backbone.conv_weights()[0], after_t3.backbone.conv_weights()[0])


def test_hat_protected_units_unchanged(conflict, tmp_path):
    from querylearn.continual.checkpoint import load_checkpoint

    m = _run(
        conflict,
        tmp_path / "hat",
        strategy="hat",
        tasks=["T1", "T2"],
        **{"t1.max_epochs": 2, "t2.max_epochs": 3},
    )
    before, _, _ = load_checkpoint(tmp_path / "hat" / "checkpoints" / "01-T1.json")
    after, _, _ = load_checkpoint(tmp_path / "hat" / "checkpoints" / "02-T2.json")
    a = torch.sigmoid(50.0 * before.masks.task_embedding.detach()[0])  # a^{<2} = T1's mask at smax [M, C]
    assert torch.equal(before.masks.task_embedding[0], after.masks.task_embedding[0])
    for k, (b0, b1) in enumerate(zip(before.backbone.blocks, after.backbone.blocks, strict=True)):
        protected1 = a[2 * k] == 1.0  # conv1 output channels fully used by T1
        assert protected1.any()
        assert torch.equal(b0.conv1.conv.weight[protected1], b1.conv1.conv.weight[protected1])
        protected2 = torch.minimum(a[2 * k + 1][:, None], a[2 * k][None, :]) == 1.0
        assert torch.equal(b0.conv2.conv.weight[protected2], b1.conv2.conv.weight[protected2])
        assert torch.equal(b0.ln1.weight, b1.ln1.weight)
    assert torch.equal(before.item_embedding.weight, after.item_embedding.weight)
    assert m["R"][1][1] >= 0.6


@torch.no_grad()
def test_next_query_loss_options():
    from querylearn.continual.losses import next_query_loss

    torch.manual_seed(0)
    model = UserEncoder(12, ModelConfig(channels=8, dilations=(1,)), masking="none")
    model.add_task("T1", 12)
    ids = torch.tensor([[0, 0, 3, 4, 5], [0, 6, 7, 8, 9]])
    gen = torch.Generator().manual_seed(0)
    cfg = load_config(TrainConfig, None, {})
    full, out = next_query_loss(model, ids, "T1", 50.0, cfg, gen)
    logits = out.logits.reshape(-1, 12)
    targets = ids[:, 1:].reshape(-1)
    assert float(full) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, targets)), rel=1e-6)
    ign = load_config(TrainConfig, None, {"next_query.ignore_padding": True})
    loss, _ = next_query_loss(model, ids, "T1", 50.0, ign, gen)
    keep = targets != 0
    assert float(loss) == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits[keep], targets[keep])), rel=1e-6
    )
    # a sampled softmax whose candidates cover the whole vocabulary is the full softmax
    every = load_config(TrainConfig, None, {"next_query.sampled_softmax": 5000})
    sampled, _ = next_query_loss(model, ids, "T1", 50.0, every, gen)
    assert float(sampled) == pytest.approx(float(full), rel=1e-5)
    few = load_config(TrainConfig, None, {"next_query.sampled_softmax": 2})
    small, out_small = next_query_loss(model, ids, "T1", 50.0, few, gen)
    assert out_small.logits.shape[-1] < 12 and float(small) < float(full)


def test_embedding_table_init_with_projection(toy, tmp_path):
    from querylearn.continual.checkpoint import load_checkpoint
    from querylearn.embeddings import embed_init, resolve_config

    ds = load_dataset(toy)
    table = tmp_path / "emb"
    embed_init(toy, table, resolve_config(source="random", dim=8, seed=0))
    vectors = np.load(table / "vectors.npy")
    assert vectors.shape == (len(ds.vocab), 8)
    cfg = load_config(TrainConfig, None, {**TINY, "tasks": ["T1"], "t1.max_epochs": 1})
    train_sequence(toy, tmp_path / "run", config=cfg, embeddings=table)
    model, meta, _ = load_checkpoint(tmp_path / "run" / "checkpoints" / "01-T1.json")
    assert meta["embedding_dim"] == 8 and model.input_proj is not None
    assert model.item_embedding.weight.shape == (len(ds.vocab), 8)
    assert not torch.equal(model.item_embedding.weight, torch.as_tensor(vectors))  # trained further
    assert torch.allclose(model.item_embedding.weight, torch.as_tensor(vectors), atol=0.05)  # from the table
    run_meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_meta["embeddings"] == "../emb"  # relative to the run directory
    # a bare directory of vectors is not an embedding table
    bare = tmp_path / "bare"
    bare.mkdir()
    np.save(bare / "vectors.npy", vectors)
    with pytest.raises(QuerylearnError, match="not an embedding table"):
        train_sequence(toy, tmp_path / "run2", config=cfg, embeddings=bare)
    # a table of another vocabulary is refused, naming the first difference
    other = json.loads((table / "vocab.json").read_text())
    other["queries"][2], other["queries"][3] = other["queries"][3], other["queries"][2]
    (table / "vocab.json").write_text(json.dumps(other, ensure_ascii=False))
    with pytest.raises(QuerylearnError, match="query id 2"):
        train_sequence(toy, tmp_path / "run3", config=cfg, embeddings=table)


def test_teracon_rho_stays_in_bounds_during_training(toy, tmp_path):
    """The strategy's rho after real batches lies in [0.0025, 0.5) and retention subsets are never empty."""
    from querylearn.continual.strategies.teracon import Teracon

    seen = []
    orig = Teracon.extra_losses

    def spy(self, ctx, batch, out):
        losses = orig(self, ctx, batch, out)
        if "retention" not in losses:  # T1: no past task, no retention
            return losses
        seen.append((list(self.last_rho), self.rho.tolist(), float(losses["retention"].detach())))
        return losses

    Teracon.extra_losses = spy
    try:
        cfg = load_config(
            TrainConfig,
            None,
            {
                **TINY,
                "t1.max_epochs": 1,
                "t2.max_epochs": 2,
                "later.max_epochs": 1,
                "t2.batch_size": 16,
                "later.batch_size": 16,
            },
        )
        train_sequence(toy, tmp_path / "rho", config=cfg)
    finally:
        Teracon.extra_losses = orig
    low, high = retention.rho_bounds(6.0)
    assert seen[0][0] == [pytest.approx(0.9)]  # first batch of T2: rho_init for the one past task
    assert any(len(used) == 2 for used, _, _ in seen)  # T3 retains T1 and T2
    for _, new, loss in seen:
        assert all(low - 1e-6 <= r < high for r in new)
        assert math.isfinite(loss) and loss >= 0


def test_checkpointed_retention_trains_the_same_model(toy, tmp_path):
    """teracon.checkpoint_students only trades memory for recomputation: same weights after T1..T3."""
    from querylearn.continual.checkpoint import load_checkpoint

    over = {
        **TINY,
        "t1.max_epochs": 1,
        "t2.max_epochs": 2,
        "later.max_epochs": 1,
        "t2.batch_size": 32,
        "later.batch_size": 32,
    }
    states = []
    for flag in (True, False):
        cfg = load_config(TrainConfig, None, {**over, "teracon.checkpoint_students": flag})
        train_sequence(toy, tmp_path / str(flag), config=cfg)
        last = sorted((tmp_path / str(flag) / "checkpoints").glob("*.json"))[-1]
        states.append(load_checkpoint(last)[0].state_dict())
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-5, atol=1e-6, msg=key)


# ---- one contract suite for every strategy ------------------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_contract(name, toy, tmp_path):
    from querylearn.export import export_user_representations

    over = {
        **TINY,
        "strategy": name,
        "t1.max_epochs": 1,
        "t2.max_epochs": 1,
        "later.max_epochs": 1,
        "t2.batch_size": 64,
        "later.batch_size": 64,
        "teracon.teacher_s": "smax",
        "precision": "bf16",
        "teracon.kr_logits": "sampled",
        "teracon.kr_classes": 7,
    }
    m = train_sequence(toy, tmp_path / name, config=load_config(TrainConfig, None, over))
    assert m["strategy"] == name and m["tasks"] == ["T1", "T2", "T3"]
    for i, row in enumerate(m["R"]):
        for j, v in enumerate(row):
            assert (v is None) == (j > i) and (v is None or 0.0 <= v <= 1.0)
    assert m["skipped_steps"] == [0, 0, 0]
    ids, vecs = export_user_representations(tmp_path / name, task="T2")
    assert vecs.shape == (len(ids), 16) and np.isfinite(vecs).all()


def test_hat_maths_known_values():
    from querylearn.continual.strategies.hat import compensation_factor, hat_regulariser

    masks = torch.tensor([[1.0, 0.5], [0.0, 1.0]])
    cumulative = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    # Σ a (1 - a<) / Σ (1 - a<) = (0 + 0.5 + 0 + 1) / (0 + 1 + 0.5 + 1)
    assert float(hat_regulariser(masks, cumulative)) == pytest.approx(1.5 / 2.5)
    e = torch.tensor([0.0, 1.0])
    f = compensation_factor(e, s=2.0, smax=50.0)
    want = (50.0 / 2.0) * (torch.cosh(2.0 * e) + 1) / (torch.cosh(e) + 1)
    assert torch.allclose(f, want)
    assert float(compensation_factor(torch.tensor([6.0]), s=50.0, smax=50.0, clamp=50.0)[0]) == pytest.approx(
        (math.cosh(50.0) + 1) / (math.cosh(6.0) + 1), rel=1e-4
    )


# ---- declared capabilities and typed artifacts ----------------------------------------------------
def _task_stub(name):
    from querylearn.continual.protocol import TaskData

    return TaskData(name=name, kind="classify", metric="accuracy", n_classes=2, users={}, labels={})


def test_strategy_capabilities():
    cfg = TrainConfig()
    seen = [_task_stub(name) for name in ("T1", "T2", "T3")]
    masked = {"teracon", "teracon-noretention", "teracon-rho1", "teracon-plain", "hat"}
    for name in STRATEGIES.names():
        s = build_strategy(name, cfg)
        assert s.has_task_masks == (name in masked), name
        assert s.train_tasks(seen) == (seen if name == "multitask" else [seen[-1]]), name
        assert s.phases(seen[-1]) == (2 if name == "conure" else 1), name
        assert s.model_position(0, 2) == (0 if name == "single" else 2), name
        assert s.reference_diagonal == (name == "single"), name


def test_r_matrix_renderings_known_answer():
    from querylearn.continual.results import RMatrix

    r = RMatrix(["A", "B"], ["mrr@5", "accuracy"], [[0.5, None], [0.25, 0.75]], single=[0.5, 0.5])
    assert r.csv() == "after,A,B\nA,0.500000,\nB,0.250000,0.750000\n"
    assert r.bwt() == {"per_task": [-0.25, None], "mean": -0.25}
    assert r.fwt() == {"per_task": [None, 0.25], "mean": 0.25}
    header, rows = r.table([1.0, 2.5])
    assert header == ["after \\ on", "A (mrr@5)", "B (accuracy)"]
    assert rows == [
        ["after A", "0.5000", ""],
        ["after B", "0.2500", "0.7500"],
        ["BWT", "-0.2500", ""],
        ["FWT", "", "+0.2500"],
        ["s/epoch", "1.00", "2.50"],
    ]
    assert r.summary() == "BWT mean -0.2500; FWT mean +0.2500"
    # a run cut after the first task: R.csv holds the learnt tasks only; no SinMo -> FWT n/a
    cut = RMatrix(["A", "B"], ["mrr@5", "accuracy"], [[0.5, None]])
    assert cut.csv() == "after,A\nA,0.500000\n"
    assert cut.fwt() == {"per_task": [None], "mean": None} and "n/a" in cut.summary()


def test_train_metrics_round_trip_and_kind(toy, tmp_path):
    from querylearn.continual.results import TrainMetrics
    from querylearn.errors import ArtifactError

    over = {**TINY, "tasks": ["T1", "T2"], "t1.max_epochs": 1, "t2.max_epochs": 1}
    cfg = load_config(TrainConfig, None, over)
    m = train_sequence(toy, tmp_path / "r", config=cfg)
    typed = TrainMetrics.read(tmp_path / "r")
    assert typed.to_dict() == m == json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert list(m)[:3] == ["kind", "schema_version", "querylearn_version"] and m["kind"] == "train-metrics"
    with pytest.raises(ArtifactError, match="expected kind 'train-metrics'"):
        TrainMetrics.from_dict({**m, "kind": "coldstart_report"})


def test_masks_artifact_for_every_masked_strategy(toy, tmp_path):
    """train-sequence writes masks.npz (masks at smax) where the strategy has task masks, and the
    report draws a task-relation figure from it for any such strategy (here HAT)."""
    from querylearn.continual.checkpoint import load_checkpoint
    from querylearn.report import build_report

    over = {**TINY, "tasks": ["T1", "T2"], "t1.max_epochs": 1, "t2.max_epochs": 1, "t2.batch_size": 64}
    for name in ("hat", "finetune"):
        cfg = load_config(TrainConfig, None, {**over, "strategy": name})
        train_sequence(toy, tmp_path / "runs" / name, config=cfg)
    assert not (tmp_path / "runs" / "finetune" / "masks.npz").exists()
    with np.load(tmp_path / "runs" / "hat" / "masks.npz") as z:
        assert list(z["tasks"]) == ["T1", "T2"] and z["smax"].tolist() == [50.0]
        model, _, _ = load_checkpoint(tmp_path / "runs" / "hat" / "checkpoints" / "02-T2.json")
        with torch.no_grad():
            assert np.array_equal(z["masks"], model.all_masks(model.smax).numpy())
    md = build_report(tmp_path / "runs").read_text(encoding="utf-8")
    assert "## Task relations" in md and "strategy `hat`" in md
    assert (tmp_path / "runs" / "figures" / "task_relation.png").is_file()


def test_report_reads_artifacts_only():
    import subprocess
    import sys

    code = (
        "import sys, querylearn.report; "
        "print('querylearn.continual.checkpoint' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_old_checkpoint_without_smax_takes_it_from_the_train_config(toy, tmp_path):
    from querylearn.continual.checkpoint import load_checkpoint

    cfg = load_config(TrainConfig, None, {**TINY, "tasks": ["T1"], "t1.max_epochs": 1, "smax": 20.0})
    train_sequence(toy, tmp_path / "r", config=cfg)
    path = tmp_path / "r" / "checkpoints" / "01-T1.json"
    assert load_checkpoint(path)[0].smax == 20.0
    meta = json.loads(path.read_text())
    del meta["smax"]  # as written before the model carried it
    path.write_text(json.dumps(meta))
    assert load_checkpoint(path)[0].smax == 20.0


def test_resume_single_restores_each_tasks_own_model(toy, tmp_path):
    """After a resume, SinMo's earlier rows still come from the earlier tasks' own models."""
    over = {**TINY, "strategy": "single", "t1.max_epochs": 1, "t2.max_epochs": 1, "later.max_epochs": 1,
            "t2.batch_size": 64, "later.batch_size": 64}
    cfg = load_config(TrainConfig, None, over)
    full = train_sequence(toy, tmp_path / "full", config=cfg)

    def stop_after_t2(position, name, metrics):
        if position == 1:
            raise _Stop

    with pytest.raises(_Stop):
        train_sequence(toy, tmp_path / "cut", config=cfg, on_task_end=stop_after_t2)
    resumed = train_sequence(resume=tmp_path / "cut")
    assert resumed["R"] == full["R"] and resumed["R"][2][:2] == resumed["R"][1][:2]
    meta = json.loads((tmp_path / "cut" / "checkpoints" / "03-T3.json").read_text())
    assert meta["task_checkpoints"] == {"T1": "01-T1.json", "T2": "02-T2.json", "T3": "03-T3.json"}
