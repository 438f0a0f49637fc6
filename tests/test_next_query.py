"""Next-query heads (tied, copy) and the training-free T1 references, on fixtures with known answers."""

import json

import numpy as np
import pytest
import torch

from querylearn.config import load_config
from querylearn.continual.checkpoint import load_checkpoint
from querylearn.continual.config import TrainConfig
from querylearn.continual.data import task_data
from querylearn.continual.evaluation import evaluate
from querylearn.continual.losses import next_query_loss
from querylearn.continual.results import TrainMetrics
from querylearn.continual.run import train_sequence
from querylearn.continual.strategies import STRATEGIES
from querylearn.data.dataset import TaskArrays, load_dataset, write_dataset
from querylearn.data.splits import permuted_split
from querylearn.data.vocab import PAD_ID, UNK_ID, QueryVocab
from querylearn.heuristics import (
    most_popular_ranks,
    next_query_references,
    popularity_scores,
    recency_frequency_ranks,
    recent_distinct_ranks,
)
from querylearn.metrics import ranking_metrics
from querylearn.models.heads import QUERY_HEADS, copy_attention, copy_log_mixture
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder

TINY = {"model.channels": 16, "model.dilations": [1, 2], "threads": 1}


# ---- training-free references ------------------------------------------------------------------
def test_history_rankers_known_answers():
    V = 10
    h = np.array(
        [
            [0, 0, 5, 6, 5, 7],  # distinct by recency: 7, 5, 6
            [0, 0, 5, 6, 5, 7],
            [0, 0, 5, 6, 5, 7],  # 9 never seen: a miss
            [1, 1, 1, 1, 1, 4],  # <unk> is never a candidate
            [1, 1, 1, 1, 1, 4],
            [0, 0, 3, 3, 3, 4],  # frequent beats recent for recency-frequency
        ]
    )
    t = np.array([5, 6, 9, 4, 1, 3])
    assert recent_distinct_ranks(h, t, V).tolist() == [1, 2, V, 0, V, 1]
    # decay 0.5: 7 -> 1.0, 5 -> 0.5 + 0.125, 6 -> 0.25; 3 -> 0.5 + 0.25 + 0.125 < 4 -> 1.0
    assert recency_frequency_ranks(h, t, V, decay=0.5).tolist() == [1, 2, V, 0, V, 1]
    # decay 0.9: 5 -> 0.9 + 0.729 > 7 -> 1.0 > 6 -> 0.81; 3 -> 0.9 + 0.81 + 0.729 > 4 -> 1.0
    assert recency_frequency_ranks(h, t, V, decay=0.9).tolist() == [0, 2, V, 0, V, 0]


def test_recent_distinct_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 8, size=(300, 12))
    t = rng.integers(0, 8, size=300)
    want = []
    for row, target in zip(h, t, strict=True):
        ranked: list[int] = []
        for q in row[::-1]:
            if q not in (PAD_ID, UNK_ID) and int(q) not in ranked:
                ranked.append(int(q))
        want.append(ranked.index(target) if target in ranked else 8)
    assert recent_distinct_ranks(h, t, 8).tolist() == want


def test_most_popular_known_answer_and_references():
    tokens = np.array([[2, 2, 3, 3], [3, 4, 0, 1], [1, 1, 0, 0]])
    score = popularity_scores(tokens, 6)
    assert most_popular_ranks(score, np.array([3, 2, 4, 5])).tolist() == [0, 1, 2, 3]
    assert np.isneginf(score[[PAD_ID, UNK_ID]]).all()
    h = np.array([[0, 2, 4], [0, 4, 2]])
    refs = next_query_references(h, np.array([2, 2]), tokens, 6)
    assert set(refs) == {"recent-distinct", "recency-frequency", "most-popular"}
    assert refs["recent-distinct"]["mrr@5"] == pytest.approx((1 / 2 + 1) / 2)
    assert refs["most-popular"]["mrr@5"] == pytest.approx(1 / 2) and refs["most-popular"]["n"] == 2


# ---- the copy distribution --------------------------------------------------------------------
def _dense_mixture(z, gate, attn, hist):
    """The mixture written out densely: log(g softmax(z) + (1 - g) c), c scattered over all classes."""
    B, T, V = z.shape
    c = torch.zeros(B, T, V).scatter_add(-1, hist[:, None, :].expand(B, T, hist.shape[1]), attn)
    g = torch.sigmoid(gate)[..., None]
    has = attn.sum(-1, keepdim=True) > 0
    return torch.where(has, torch.log(g * torch.softmax(z, -1) + (1 - g) * c), torch.log_softmax(z, -1))


HIST = torch.tensor([[PAD_ID, UNK_ID, 5, 5, 7], [PAD_ID, PAD_ID, UNK_ID, UNK_ID, UNK_ID]])
QPOS = torch.tensor([2, 4])  # row t sees the history up to position QPOS[t]


def test_copy_attention_ignores_padding_unk_and_the_future():
    attn = copy_attention(torch.zeros(2, 2, 5), HIST, QPOS)  # uniform over the allowed positions
    torch.testing.assert_close(attn[0, 0], torch.tensor([0, 0, 1.0, 0, 0]))  # only the first 5
    torch.testing.assert_close(attn[0, 1], torch.tensor([0, 0, 1 / 3, 1 / 3, 1 / 3]))
    assert attn[1].abs().sum() == 0 and torch.isfinite(attn).all()  # nothing to copy: zeros, not NaN


def test_copy_mixture_known_values_and_gradients():
    torch.manual_seed(0)
    z = torch.randn(2, 2, 9, requires_grad=True)
    gate = torch.zeros(2, 2, requires_grad=True)  # g = 1/2
    scores = torch.randn(2, 2, 5, requires_grad=True)
    attn = copy_attention(scores, HIST, QPOS)
    out = copy_log_mixture(z, gate, attn, HIST, QPOS)
    p = out.exp()
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 2))
    soft = torch.softmax(z, -1)
    # copy mass only on 5 and 7, never on padding or <unk>
    torch.testing.assert_close(p[0, 1, [PAD_ID, UNK_ID]], 0.5 * soft[0, 1, [PAD_ID, UNK_ID]])
    a = attn[0, 1]
    torch.testing.assert_close(p[0, 1, 5], 0.5 * soft[0, 1, 5] + 0.5 * (a[2] + a[3]))
    torch.testing.assert_close(p[0, 0, 5], 0.5 * soft[0, 0, 5] + 0.5)
    torch.testing.assert_close(out[1], torch.log_softmax(z[1], -1))  # no history: the softmax alone
    # the sparse scatter gives the dense mixture's values and gradients (a repeated query counts once)
    dense = _dense_mixture(z, gate, attn, HIST)
    torch.testing.assert_close(out, dense)
    w = torch.randn_like(out)
    got = torch.autograd.grad((out * w).sum(), (z, gate, scores), retain_graph=True)
    want = torch.autograd.grad((dense * w).sum(), (z, gate, scores))
    for g1, g2 in zip(got, want, strict=True):
        torch.testing.assert_close(g1, g2)


def test_copy_mixture_over_a_candidate_list():
    z = torch.zeros(2, 2, 3)
    attn = copy_attention(torch.zeros(2, 2, 5), HIST, QPOS)
    out = copy_log_mixture(z, torch.zeros(2, 2), attn, HIST, QPOS, torch.tensor([1, 5, 9]))
    # candidates <unk>, 5, 9: 5 keeps its copy mass 2/3, 7 (not a candidate) is dropped
    torch.testing.assert_close(out[0, 1].exp(), torch.tensor([1 / 6, 1 / 6 + 1 / 3, 1 / 6]))
    # any order of the candidates (TERACON's sampled pseudo-label classes are a random permutation)
    out = copy_log_mixture(z, torch.zeros(2, 2), attn, HIST, QPOS, torch.tensor([9, 1, 5]))
    torch.testing.assert_close(out[0, 1].exp(), torch.tensor([1 / 6, 1 / 6, 1 / 6 + 1 / 3]))


# ---- tied weights -----------------------------------------------------------------------------
def _model(head, V=12, init=None, channels=8):
    torch.manual_seed(0)
    m = UserEncoder(
        V,
        ModelConfig(channels=channels, dilations=(1, 2)),
        masking="relation",
        init_vectors=init,
        next_query_task="T1",
        next_query_head=head,
    )
    m.add_task("T1", V)
    m.add_task("T2", 3)
    return m


def test_tied_head_shares_storage_and_gradients():
    m = _model("tied")
    assert m.item_vectors().data_ptr() == m.item_embedding.weight.data_ptr()
    keys = set(m.state_dict())
    assert "heads.heads.T1.bias" in keys and "heads.heads.T1.weight" not in keys
    assert m.heads.kind("T1") == "tied" and m.heads.kind("T2") == "softmax"
    h = torch.randn(4, 8)
    logits = m.head_logits(h, "T1")
    torch.testing.assert_close(logits, h @ m.item_embedding.weight.T + m.heads.heads["T1"].bias)
    logits[:, 3].sum().backward()  # d/dE[3] = Σ_b h_b, every other row 0
    grad = m.item_embedding.weight.grad
    torch.testing.assert_close(grad[3], h.sum(0))
    assert grad[torch.arange(12) != 3].abs().sum() == 0


def test_tied_head_goes_through_the_projection_when_widths_differ():
    init = np.random.default_rng(0).normal(size=(12, 20)).astype(np.float32)
    m = _model("tied", init=init)
    assert m.input_proj is not None
    vec = m.item_vectors()
    torch.testing.assert_close(vec, m.input_proj(m.item_embedding.weight))
    m.head_logits(torch.randn(2, 8), "T1").sum().backward()
    assert m.item_embedding.weight.grad.abs().sum() > 0 and m.input_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("head", QUERY_HEADS)
def test_candidates_subset_equals_the_full_output(head):
    m = _model(head)
    ids = torch.tensor([[0, 1, 4, 5, 4], [0, 0, 0, 7, 8]])
    full = m(ids, "T1", s=m.smax, all_positions=True).logits  # [B, L, V]
    cand = torch.randperm(12, generator=torch.Generator().manual_seed(1))  # every class, shuffled
    sub = m(ids, "T1", s=m.smax, all_positions=True, candidates=cand).logits
    torch.testing.assert_close(full[..., cand], sub)
    last = m(ids, "T1", s=m.smax).logits  # the last position alone reads the same history
    torch.testing.assert_close(last, full[:, -1])


def test_copy_head_needs_the_ids():
    m = _model("copy")
    with pytest.raises(ValueError, match="needs the input ids"):
        m.heads(torch.randn(2, 8), "T1")


# ---- the copy head learns what the softmax does not ----------------------------------------------
def make_period_dataset(out, n_users=400, n_queries=300, seq_len=10, seed=0):
    """Each user repeats three random distinct queries (a b c a b c ...): the next query is always the
    user's query three steps back, one of the last three. Only T1."""
    rng = np.random.default_rng(seed)
    vocab = QueryVocab(["<pad>", "<unk>"] + [f"q{i}" for i in range(n_queries)], [0, 0] + [1] * n_queries)
    seqs = np.zeros((n_users, seq_len), dtype=np.int32)
    for u in range(n_users):
        three = rng.choice(n_queries, size=3, replace=False) + 2
        length = int(rng.integers(5, seq_len + 1))
        seqs[u, seq_len - length :] = np.resize(three, length)
    split = permuted_split(n_users, seed)
    users = np.arange(n_users)
    write_dataset(
        out,
        source="fixture",
        synthetic=True,
        vocab=vocab,
        user_ids=[f"u{i}" for i in users],
        sequences=seqs,
        user_split=split,
        tasks=[
            TaskArrays("T1", "next_query", "mrr@5", users, seqs[:, -1].astype(np.int64), split, len(vocab))
        ],
    )
    return out


PERIOD = {
    **TINY,
    "t1.max_epochs": 8,
    "t1.batch_size": 32,
    "t1.lr": 1e-2,
    "t1.patience": 10,
    "selection_metric": "task",
    "next_query.ignore_padding": True,
}


@pytest.fixture(scope="module")
def period(tmp_path_factory):
    return make_period_dataset(tmp_path_factory.mktemp("period") / "ds")


def test_copy_head_learns_the_users_own_queries_and_the_softmax_does_not(period, tmp_path):
    got = {}
    for head in ("softmax", "copy"):
        cfg = load_config(TrainConfig, None, {**PERIOD, "strategy": "single", "next_query.head": head})
        got[head] = train_sequence(period, tmp_path / head, config=cfg)["R"][0][0]
    refs = json.loads((tmp_path / "copy" / "metrics.json").read_text())["references"]["T1"]
    assert got["copy"] >= 0.9, got
    assert got["softmax"] <= 0.3, got
    assert refs["recent-distinct"]["mrr@5"] == pytest.approx(1 / 3)  # always the third most recent


# ---- every strategy with every head ---------------------------------------------------------------
@pytest.mark.parametrize("head", [h for h in QUERY_HEADS if h != "softmax"])
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_trains_with_every_head(name, head, toy, tmp_path):
    over = {
        **TINY,
        "strategy": name,
        "tasks": ["T1", "T2"],
        "next_query.head": head,
        "t1.max_epochs": 1,
        "t2.max_epochs": 1,
        "t2.batch_size": 64,
        "next_query.sampled_softmax": 5 if head == "copy" else 0,
        "teracon.kr_logits": "full" if head == "tied" else "sampled",
        "teracon.kr_classes": 7,
    }
    m = train_sequence(toy, tmp_path / name, config=load_config(TrainConfig, None, over))
    assert m["skipped_steps"] == [0, 0]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in (m["R"][0][0], m["R"][1][0], m["R"][1][1]))
    # the checkpoint rebuilds the same head and gives the same T1 score
    ckpt = json.loads((tmp_path / name / "checkpoints" / "02-T2.json").read_text())
    path = tmp_path / name / "checkpoints" / ckpt["task_checkpoints"]["T1"]
    model, meta, _ = load_checkpoint(path)
    assert meta["next_query_head"] == head and model.heads.kind("T1") == head
    ds = load_dataset(toy)
    seqs = torch.as_tensor(np.asarray(ds.sequences, dtype=np.int64))
    cfg = load_config(TrainConfig, None, over)
    again = evaluate(model, task_data(ds, "T1"), "test", seqs, config=cfg, batch_size=512)
    assert again["mrr@5"] == pytest.approx(m["R"][1][0], abs=1e-6)


def test_sampled_softmax_loss_with_the_copy_head_is_finite_and_trains():
    m = _model("tied-copy")
    cfg = load_config(TrainConfig, None, {"next_query.sampled_softmax": 3})
    ids = torch.tensor([[0, 2, 3, 2, 3, 2], [0, 0, 4, 5, 4, 5]])
    loss, out = next_query_loss(m, ids, "T1", m.smax, cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and out.logits.shape[:2] == (2, 5)
    loss.backward()
    head = m.heads.heads["T1"]
    assert head.recency.grad.abs().sum() > 0 and head.gate.weight.grad.abs().sum() > 0
    assert m.item_embedding.weight.grad.abs().sum() > 0


# ---- the generator's auxiliary term (next_query.generator_aux) -------------------------------------
AUX_IDS = torch.tensor([[0, 2, 3, 2, 3, 2], [0, 0, 4, 5, 4, 5]])


def _aux_loss(m, lam, sampled=0):
    over = {"next_query.generator_aux": lam, "next_query.sampled_softmax": sampled}
    cfg = load_config(TrainConfig, None, over)
    return next_query_loss(m, AUX_IDS, "T1", m.smax, cfg, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("head", ["copy", "tied-copy"])
def test_generator_aux_adds_lambda_times_the_generator_ce(head):
    m = _model(head)
    base, out = _aux_loss(m, 0.0)
    with_aux, _ = _aux_loss(m, 0.5)
    gen = m.heads.generator_logits(out.hidden, "T1", item_vectors=m.item_vectors)  # [B, L-1, V]
    expected = torch.nn.functional.cross_entropy(gen.reshape(-1, 12), AUX_IDS[:, 1:].reshape(-1))
    torch.testing.assert_close(with_aux - base, 0.5 * expected)
    # the generator is the mixture's softmax part: with the gate shut (g = 1) the two agree
    torch.testing.assert_close(m.heads.generator_logits(out.hidden, "T1", item_vectors=m.item_vectors)
                               .log_softmax(-1)[0, 0], out.logits[0, 0])  # row 0: nothing to copy yet
    sampled, _ = _aux_loss(m, 0.5, sampled=3)  # over a candidate list as well
    assert torch.isfinite(sampled)


@pytest.mark.parametrize("head", ["softmax", "tied"])
def test_generator_aux_leaves_heads_without_copy_alone(head):
    m = _model(head)
    torch.testing.assert_close(_aux_loss(m, 0.0)[0], _aux_loss(m, 2.0)[0])


def test_generator_aux_gradient_reaches_the_encoder_and_not_the_copy_path():
    def grads(lam, generator_only=False):
        m = _model("copy")
        loss, out = _aux_loss(m, lam)
        if generator_only:  # CE of the generator alone, by hand
            gen = m.heads.generator_logits(out.hidden, "T1", item_vectors=m.item_vectors)
            loss = torch.nn.functional.cross_entropy(gen.reshape(-1, 12), AUX_IDS[:, 1:].reshape(-1))
        loss.backward()
        params = m.named_parameters()
        return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in params}

    mix, aux, both = grads(0.0), grads(0.0, generator_only=True), grads(0.5)
    encoder = [n for n in mix if not n.startswith("heads.")]
    assert sum(float(aux[n].abs().sum()) for n in encoder) > 0  # the generator's CE trains the encoder
    for n in mix:  # d loss(λ) = d CE(mixture) + λ d CE(generator)
        torch.testing.assert_close(both[n], mix[n] + 0.5 * aux[n])
    for n in ("heads.heads.T1.gate.weight", "heads.heads.T1.recency", "heads.heads.T1.copy_query.weight"):
        assert aux[n].abs().sum() == 0  # the auxiliary term leaves the copy path alone


def test_copy_grad_head_keeps_the_copy_path_out_of_the_encoder():
    """With the generator's weight W = 0 its logits do not depend on h, so under copy_grad = "head"
    the encoder gets no gradient at all, while under "full" the gate and attention reach it; the
    outputs are the same either way and the copy path's own weights learn in both."""

    def run(mode):
        m = _model("copy")
        with torch.no_grad():
            m.heads.heads["T1"].weight.zero_()
        cfg = load_config(TrainConfig, None, {"next_query.copy_grad": mode})
        loss, out = next_query_loss(m, AUX_IDS, "T1", m.smax, cfg, torch.Generator().manual_seed(0))
        loss.backward()
        enc = sum(float(p.grad.abs().sum()) for n, p in m.named_parameters()
                  if not n.startswith("heads.") and p.grad is not None)
        head = m.heads.heads["T1"]
        return enc, out.logits.detach(), head

    full_grad, full_out, _ = run("full")
    head_grad, head_out, head = run("head")
    torch.testing.assert_close(full_out, head_out)
    assert full_grad > 0 and head_grad == 0
    assert head.gate.weight.grad.abs().sum() > 0 and head.copy_query.weight.grad.abs().sum() > 0


def test_config_rejects_negative_generator_aux():
    with pytest.raises(Exception, match="generator_aux: must be >= 0"):
        load_config(TrainConfig, None, {"next_query.generator_aux": -1.0})


def test_copy_head_with_the_defaults_learns_t1_and_the_next_task_still_trains(toy, tmp_path):
    """toy: T1 is a walk (next = last + 1 with p 0.9, a new query: the generator's work, not the copy's)
    and T3 a function of the last query. With the defaults (generator_aux = 1, copy_grad = "head")
    the copy head learns the walk and the encoder carries T3; with the mixture's CE alone and the
    copy path's gradient in the encoder ("full", λ = 0), T1 is learnt less and T3 stays at chance."""
    over = {**TINY, "strategy": "finetune", "tasks": ["T1", "T3"], "next_query.head": "copy",
            "t1.max_epochs": 6, "t1.lr": 1e-2, "later.max_epochs": 6, "later.lr": 1e-2,
            "selection_metric": "task", "next_query.ignore_padding": True}
    default = train_sequence(toy, tmp_path / "default", config=load_config(TrainConfig, None, over))["R"]
    plain = {**over, "next_query.generator_aux": 0.0, "next_query.copy_grad": "full"}
    old = train_sequence(toy, tmp_path / "old", config=load_config(TrainConfig, None, plain))["R"]
    assert default[0][0] >= 0.8 > old[0][0], (default, old)  # T1 after T1
    assert default[1][1] >= 0.6 and old[1][1] <= 0.34, (default, old)  # T3 (3 classes, chance 1/3)


# ---- references in metrics.json and in the report --------------------------------------------------
def test_references_stored_beside_R_on_the_same_rows(toy, tmp_path):
    from querylearn.report import build_report

    over = {**TINY, "tasks": ["T1", "T2"], "t1.max_epochs": 1, "t2.max_epochs": 1}
    m = train_sequence(toy, tmp_path / "r", config=load_config(TrainConfig, None, over))
    ds = load_dataset(toy)
    t = task_data(ds, "T1")
    seqs = np.asarray(ds.sequences)
    want = next_query_references(
        seqs[t.users["test"], :-1], t.labels["test"], seqs[np.unique(t.users["train"]), 1:], t.n_classes
    )
    assert m["references"] == {"T1": json.loads(json.dumps(want))}
    assert m["references"]["T1"]["recent-distinct"]["n"] == m["R_detail"][0][0]["n"]
    assert list(m)[-1] == "references"
    # a metrics.json written before references existed still reads
    old = {k: v for k, v in m.items() if k != "references"}
    assert TrainMetrics.from_dict(old).references is None
    ((_, header, rows),) = TrainMetrics.from_dict(m).reference_tables()
    assert header[1] == "mrr@5" and [r[0].split(" (")[0] for r in rows] == [
        "model after T1",
        "model after T2",
        "recent-distinct",
        "recency-frequency",
        "most-popular",
    ]
    assert rows[2][1] == f"{want['recent-distinct']['mrr@5']:.4f}"
    md = build_report(tmp_path / "r", tmp_path / "rep").read_text(encoding="utf-8")
    # the report lists the rankers as reference rows of the headline table, beside the model
    assert "recent-distinct (heuristic)" in md and "recency-frequency (heuristic)" in md


def test_reference_ranks_agree_with_ranking_metrics():
    h = np.array([[0, 3, 4, 5], [0, 0, 2, 3]])
    t = np.array([4, 7])
    r = recent_distinct_ranks(h, t, 8)
    assert r.tolist() == [1, 8]
    assert ranking_metrics(r, (5,))["mrr@5"] == pytest.approx(0.25)
