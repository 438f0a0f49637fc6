"""Backbone, masks and heads: causal leakage, mask shapes/ranges, closed forms, growth."""

import math

import numpy as np
import pytest
import torch

from querylearn.models.heads import TaskHeads
from querylearn.models.masking import (
    TaskMaskBank,
    anneal_s,
    plain_masks,
    relation_coefficients,
    relation_masks,
)
from querylearn.models.nextitnet import CausalConv1d, ModelConfig, NextItNet
from querylearn.models.user_encoder import UserEncoder

CFG = ModelConfig(channels=16, dilations=(1, 2), kernel_size=3)


def test_causal_conv_matches_definition():
    torch.manual_seed(0)
    conv = CausalConv1d(4, 3, dilation=2)
    x = torch.randn(2, 7, 4)  # [B, L, C]
    y = conv(x)
    w, b = conv.conv.weight, conv.conv.bias  # [C, C, 3]
    # output at t = b + W_0 h_{t-2δ} + W_1 h_{t-δ} + W_2 h_t, zero before the start
    for t in range(7):
        ref = b.clone().expand(2, 4).clone()
        for i, lag in enumerate((4, 2, 0)):
            if t - lag >= 0:
                ref = ref + x[:, t - lag, :] @ w[:, :, i].T
        assert torch.allclose(y[:, t, :], ref, atol=1e-5)
    # the same as PyTorch's Conv1d on the left-padded channel-first input
    ref = conv.conv(torch.nn.functional.pad(x.transpose(1, 2), (4, 0))).transpose(1, 2)
    assert torch.allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("masks", [False, True])
def test_no_causal_leakage(masks):
    """Changing a future token never changes earlier outputs."""
    torch.manual_seed(0)
    model = UserEncoder(20, CFG, masking="relation")
    model.add_task("T1", 20)
    model.add_task("T2", 3)
    ids = torch.randint(2, 20, (3, 9))
    m = model.task_masks("T2", 5.0) if masks else None
    base = model.encode(ids, m, all_positions=True)  # [B, L, C]
    for t in range(9):
        changed = ids.clone()
        changed[:, t] = (changed[:, t] + 1) % 18 + 2
        out = model.encode(changed, m, all_positions=True)
        assert torch.equal(out[:, :t], base[:, :t]), f"position < {t} changed"
        assert not torch.allclose(out[:, t], base[:, t])


def test_receptive_field_default_is_121():
    assert ModelConfig().receptive_field() == 121


def test_backbone_shapes_and_per_row_masks():
    net = NextItNet(CFG)
    x = torch.randn(5, 6, 16)
    m = torch.rand(4, 16)  # [2K, C]
    per_row = m.expand(5, 4, 16)  # [B, 2K, C]
    assert net(x).shape == (5, 6, 16)
    assert torch.allclose(net(x, m), net(x, per_row), atol=1e-6)


def test_mask_shapes_and_ranges():
    torch.manual_seed(0)
    bank = TaskMaskBank(4, 16)
    for n in (1, 2, 3):
        bank.add_task()
        for s in (1 / 50, 1.0, 50.0):
            for mode in ("plain", "relation"):
                m = bank.masks(s, mode)
                assert m.shape == (n, 4, 16)
                assert bool(((m >= 0) & (m <= 1)).all())
    assert bank.rel_weight.shape == (3, 4, 5) and bank.rel_bias.shape == (3, 4)
    e = bank.task_embedding.detach()
    assert float(e.min()) >= 0.0 and float(e.max()) <= 2.0  # U(0, 2) init
    bank.task_embedding.data.mul_(10)
    bank.clamp_(6.0)
    assert float(bank.task_embedding.detach().abs().max()) <= 6.0


def test_relation_mask_one_task_closed_form():
    """With N = 1 the relation mask is σ(s·(w·tanh(s e) + b))."""
    torch.manual_seed(1)
    e = torch.randn(1, 4, 16)
    w = torch.randn(1, 4, 1)
    b = torch.randn(1, 4)
    s = 3.7
    got = relation_masks(e, w, b, s)
    want = torch.sigmoid(s * (w[..., :1] * torch.tanh(s * e) + b[..., None]))
    assert torch.allclose(got, want, atol=1e-6)


def _reference_relation_mask(e, w, b, t, s):
    """Independent reference from docs/algorithms.md#relation-aware-masks: stack
    Q = [e^t; e^j, -e^j (j != t, increasing)]."""
    n, m, c = e.shape
    out = torch.empty(m, c)
    for layer in range(m):
        rows = [e[t, layer]]
        for j in range(n):
            if j != t:
                rows += [e[j, layer], -e[j, layer]]
        q = torch.stack(rows)  # [(2N-1), C]
        z = torch.tanh(s * q)
        pre = (w[t, layer][:, None] * z).sum(0) + b[t, layer]  # linear map over the task axis
        out[layer] = torch.sigmoid(s * pre)
    return out


def test_relation_masks_all_tasks_match_reference():
    torch.manual_seed(2)
    n = 3
    e = torch.rand(n, 4, 8) * 2
    w = torch.randn(n, 4, 2 * n - 1)
    b = torch.randn(n, 4)
    got = relation_masks(e, w, b, 2.5)  # [N, M, C]
    for t in range(n):
        assert torch.allclose(got[t], _reference_relation_mask(e, w, b, t, 2.5), atol=1e-5)
    coef = relation_coefficients(w)
    assert torch.allclose(coef[1, :, 0], w[1, :, 1] - w[1, :, 2])  # task 0 is task 1's first "other"
    assert torch.allclose(coef[1, :, 1], w[1, :, 0])


def test_initial_relation_mask_is_sigmoid_of_bias():
    """At init (w ≈ 0, b = 0.1) the mask is ≈ σ(0.1 s) (docs/algorithms.md#relation-aware-masks)."""
    bank = TaskMaskBank(2, 8)
    bank.add_task()
    bank.add_task()
    with torch.no_grad():
        bank.rel_weight.zero_()
    m = bank.masks(50.0, "relation")
    assert torch.allclose(m, torch.full_like(m, 1 / (1 + math.exp(-5.0))), atol=1e-6)


def test_grow_relation_layers_keeps_old_masks():
    torch.manual_seed(3)
    bank = TaskMaskBank(2, 8, relation_layers="grow")
    bank.add_task()
    bank.add_task()
    with torch.no_grad():
        bank.rel_weight.normal_()
    before = bank.masks(4.0, "relation")
    bank.add_task()
    after = bank.masks(4.0, "relation")
    assert torch.allclose(after[:2], before, atol=1e-6)


def test_plain_masks_and_anneal():
    e = torch.tensor([[[0.0, 1.0]]])
    assert torch.allclose(plain_masks(e, 2.0), torch.sigmoid(torch.tensor([[[0.0, 2.0]]])))
    assert anneal_s(0, 10, 50) == pytest.approx(0.02)
    assert anneal_s(5, 10, 50) == pytest.approx(0.02 + (50 - 0.02) / 2)
    assert anneal_s(10, 10, 50) == pytest.approx(50.0)


def test_heads_and_candidates():
    torch.manual_seed(0)
    heads = TaskHeads(8)
    heads.add_task("T1", 10)
    h = torch.randn(3, 8)
    full = heads(h, "T1")
    cand = torch.tensor([1, 4, 7])
    assert torch.allclose(heads(h, "T1", cand), full[:, cand])
    assert torch.allclose(heads.heads["T1"].bias, torch.full((10,), 0.1))
    with pytest.raises(ValueError):
        heads.add_task("T1", 3)


def test_encoder_projects_embedding_table_of_other_width():
    vectors = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    model = UserEncoder(12, CFG, masking="none", init_vectors=vectors)
    assert model.input_proj is not None and model.embedding_dim == 5
    assert torch.allclose(model.item_embedding.weight, torch.as_tensor(vectors))
    model.add_task("T1", 12)
    out = model(torch.randint(0, 12, (2, 4)), "T1", s=50.0)
    assert out.hidden.shape == (2, 16) and out.logits.shape == (2, 12) and out.masks is None
    same = UserEncoder(12, CFG, masking="none", init_vectors=np.zeros((12, 16), np.float32))
    assert same.input_proj is None


@pytest.mark.parametrize("per_row", [False, True])
def test_last_position_readout_equals_full_forward(per_row):
    torch.manual_seed(4)
    for cfg, length in (
        (ModelConfig(channels=8, dilations=(1, 4)), 5),
        (ModelConfig(channels=8, dilations=(2,), kernel_size=2), 12),
    ):
        net = NextItNet(cfg)
        x = torch.randn(3, length, 8)
        masks = torch.rand(3, cfg.n_masked_layers, 8) if per_row else torch.rand(cfg.n_masked_layers, 8)
        full = net(x, masks)[:, -1]
        assert torch.allclose(net(x, masks, last_only=True), full, atol=1e-5)
        weights = [w * 0.5 for w in net.conv_weights()]
        assert torch.allclose(
            net(x, masks, weights, last_only=True), net(x, masks, weights)[:, -1], atol=1e-5
        )
    # gradients agree too
    net = NextItNet(ModelConfig(channels=8, dilations=(1, 2)))
    x = torch.randn(2, 6, 8, requires_grad=True)
    g_full = torch.autograd.grad(net(x)[:, -1].sum(), x)[0]
    g_last = torch.autograd.grad(net(x, last_only=True).sum(), x)[0]
    assert torch.allclose(g_full, g_last, atol=1e-5)


def test_encoder_exposes_its_parts():
    model = UserEncoder(20, CFG, masking="conure")
    shared = model.shared_modules()
    assert shared[0] is model.item_embedding and len(shared) == 1 + 2 * CFG.n_blocks  # no projection
    assert all(isinstance(m, torch.nn.LayerNorm) for m in shared[1:])
    projected = UserEncoder(20, CFG, embedding_dim=8)
    assert projected.shared_modules()[1] is projected.input_proj
    convs = model.conv_layers()
    assert len(convs) == CFG.n_masked_layers
    assert convs[0] is model.backbone.blocks[0].conv1.conv and convs[3] is model.backbone.blocks[1].conv2.conv
    assert [w.data_ptr() for w in model.conv_weights()] == [c.weight.data_ptr() for c in convs]
    assert model.smax == 50.0 and UserEncoder(20, CFG, smax=7.0).smax == 7.0
    with pytest.raises(ValueError, match="smax"):
        UserEncoder(20, CFG, smax=0.0)


def test_conure_weight_masks_module():
    """Inference uses W ⊙ (M_1 ∪ ... ∪ M_t); while a task trains, stopgrad(W ⊙ F) + W ⊙ trainable."""
    torch.manual_seed(0)
    model = UserEncoder(20, CFG, masking="conure")
    model.add_task("T1", 20)
    model.add_task("T2", 3)
    assert sorted(k for k in model.state_dict() if k.startswith("weight_masks.")) == [
        "weight_masks.T1",
        "weight_masks.T2",
    ]
    m1, m2 = model.weight_masks.mask("T1"), model.weight_masks.mask("T2")
    m1[:, 0] = True
    m2[:, 1] = True
    w = model.conv_weights()
    for i, eff in enumerate(model.conure_weights("T1")):
        assert torch.equal(eff, w[i] * m1[i])
    for i, eff in enumerate(model.conure_weights("T2")):
        assert torch.equal(eff, w[i] * (m1[i] | m2[i]))
    frozen = model.weight_masks.union(["T1"], w)
    model.weight_masks.begin_training("T2", frozen, [~f for f in frozen])
    eff = model.conure_weights("T2")
    assert torch.equal(eff[0], w[0])  # every entry used while the task trains
    eff[0].sum().backward()
    assert torch.equal(w[0].grad, (~m1[0]).float())  # no gradient through the frozen entries
    assert torch.equal(model.conure_weights("T1")[0], w[0] * m1[0])  # past tasks: inference weights
    model.weight_masks.end_training()
    assert torch.equal(model.conure_weights("T2")[0], w[0] * (m1[0] | m2[0]))
