"""Exact padding (model.padding = "exact"), the trimmed padding prefix and length-bucketed batches."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from querylearn.config_loader import load_config
from querylearn.continual.buckets import length_bucketed_batches
from querylearn.continual.config import TrainConfig
from querylearn.continual.losses import next_query_loss
from querylearn.errors import ConfigError
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder, padding_prefix

EXACT = ModelConfig(channels=8, dilations=(1, 2), kernel_size=3, padding="exact")
VOCAB = 13
# mixed lengths, left-padded: real lengths 6, 4, 3, 5 (common padding prefix of 2 columns)
IDS = torch.tensor(
    [
        [0, 0, 3, 4, 5, 6, 7, 8],
        [0, 0, 0, 0, 2, 9, 9, 4],
        [0, 0, 0, 0, 0, 11, 12, 1],
        [0, 0, 0, 5, 6, 7, 10, 2],
    ]
)
REAL = IDS != 0


def _model(config: ModelConfig = EXACT, head: str = "softmax", masking: str = "relation") -> UserEncoder:
    torch.manual_seed(0)
    model = UserEncoder(VOCAB, config, masking=masking, next_query_task="T1", next_query_head=head)
    model.add_task("T1", VOCAB)
    model.add_task("T2", 4)
    return model


def _untrimmed(model: UserEncoder, ids: torch.Tensor, masks) -> torch.Tensor:
    """The straightforward exact-padding path: every position computed, padded ones zeroed."""
    x = model.embed(ids)
    return model.backbone(x, masks, keep=(ids != 0).unsqueeze(-1).to(x.dtype))  # [B, L, C]


def test_padding_prefix():
    assert padding_prefix(IDS) == 2
    assert padding_prefix(IDS[:, 2:]) == 0
    assert padding_prefix(torch.zeros(3, 5, dtype=torch.long)) == 5


def test_real_positions_do_not_depend_on_left_padding():
    model = _model()
    masks = model.task_masks("T1", 50.0)
    with torch.no_grad():
        h = model.encode(IDS, masks, all_positions=True)  # [B, 8, C]
        more = torch.cat([torch.zeros(4, 5, dtype=torch.long), IDS], dim=1)  # 5 more padding columns
        h_more = model.encode(more, masks, all_positions=True)[:, 5:]
        assert torch.allclose(h[REAL], h_more[REAL], atol=1e-5)
        assert (h[~REAL] == 0).all()  # padded positions hold zeros
        # each row alone, without any padding, gives the same outputs at its positions
        for b in range(4):
            alone = model.encode(IDS[b : b + 1, REAL[b]], masks, all_positions=True)[0]
            assert torch.allclose(h[b, REAL[b]], alone, atol=1e-5)
        last = model.encode(more, masks)  # [B, C] (the cheaper last-position path)
        assert torch.allclose(last, h[:, -1], atol=1e-5)


def test_exact_equals_parity_without_padding():
    full = torch.tensor([[3, 4, 5, 6, 7, 8], [2, 9, 9, 4, 1, 3]])
    exact, parity = _model(), _model(replace(EXACT, padding="parity"))
    parity.load_state_dict(exact.state_dict())
    with torch.no_grad():
        m = exact.task_masks("T1", 50.0)
        h_exact, h_parity = (model.encode(full, m, all_positions=True) for model in (exact, parity))
        assert torch.allclose(h_exact, h_parity)
        # with padding they differ (parity embeds and convolves the padding ids)
        assert not torch.allclose(exact.encode(IDS, m), parity.encode(IDS, m), atol=1e-4)


@pytest.mark.parametrize("masking", ["relation", "conure"])
def test_trimmed_encode_equals_untrimmed_outputs_and_gradients(masking):
    model = _model(masking=masking)
    masks = model.task_masks("T1", 3.0)
    conv_weights = model.conure_weights("T1") if masking == "conure" else None
    h = model.encode(IDS, masks, all_positions=True, task="T1")
    x = model.embed(IDS)
    ref = model.backbone(x, masks, conv_weights, keep=REAL.unsqueeze(-1).float())
    assert torch.allclose(h, ref, atol=1e-5)
    weights = torch.randn_like(ref)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.autograd.grad((h * weights).sum(), params, allow_unused=True, retain_graph=True)
    g_ref = torch.autograd.grad((ref * weights).sum(), params, allow_unused=True)
    for a, b in zip(g, g_ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5)


def _reference_loss(model, ids, nq, generator):
    """next_query_loss without trimming: every position computed, CE mean over B(L-1)."""
    inputs, targets = ids[:, :-1], ids[:, 1:]
    candidates = None
    if nq.sampled_softmax:
        negatives = torch.randint(VOCAB, (nq.sampled_softmax,), generator=generator)
        candidates = torch.unique(torch.cat([targets.reshape(-1), negatives]))
        targets = torch.searchsorted(candidates, targets)
    masks = model.task_masks("T1", 3.0)
    hidden = _untrimmed(model, inputs, masks)
    logits = model.head_logits(hidden, "T1", candidates, ids=inputs)  # [B, L-1, S]
    loss = _mean_ce(logits, targets, ids, nq)
    if nq.generator_aux > 0 and model.heads.has_copy("T1"):  # + λ CE(generator alone)
        gen = model.heads.generator_logits(hidden, "T1", candidates, item_vectors=model.item_vectors)
        loss = loss + nq.generator_aux * _mean_ce(gen, targets, ids, nq)
    return loss


def _mean_ce(logits, targets, ids, nq):
    logits = logits.reshape(-1, logits.shape[-1])
    per = torch.nn.functional.cross_entropy(logits, targets.reshape(-1), reduction="none")
    if nq.ignore_padding:
        keep = (ids[:, 1:] != 0).reshape(-1)
        return (per * keep).sum() / keep.sum()
    return per.mean()


@pytest.mark.parametrize(
    "head,sets",
    [
        ("softmax", {}),
        ("softmax", {"next_query.ignore_padding": True}),
        ("softmax", {"next_query.sampled_softmax": 3}),
        ("tied", {}),
        ("copy", {}),
        ("copy", {"next_query.generator_aux": 0.0, "next_query.copy_grad": "full"}),
        ("copy", {"next_query.sampled_softmax": 3}),
        ("tied-copy", {"next_query.ignore_padding": True}),
    ],
)
def test_trimmed_next_query_loss_equals_untrimmed(head, sets):
    ids = torch.cat([torch.zeros(4, 3, dtype=torch.long), IDS], dim=1)  # padding prefix 5 -> 4 dropped
    model = _model(head=head)
    config = load_config(TrainConfig, None, {"next_query.head": head, **sets})
    loss, out = next_query_loss(model, ids, "T1", 3.0, config, torch.Generator().manual_seed(1))
    assert out.logits.shape[1] == ids.shape[1] - 1 - 4  # the 4 all-padding input/target positions left out
    ref = _reference_loss(model, ids, config.next_query, torch.Generator().manual_seed(1))
    assert torch.allclose(loss, ref, atol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    g = torch.autograd.grad(loss, params, allow_unused=True)
    g_ref = torch.autograd.grad(ref, params, allow_unused=True)
    for a, b in zip(g, g_ref, strict=True):
        a = torch.zeros(()) if a is None else a
        b = torch.zeros(()) if b is None else b
        assert torch.allclose(a, b, atol=1e-5)


def test_parity_loss_is_untrimmed():
    model = _model(replace(EXACT, padding="parity"))
    _, out = next_query_loss(model, IDS, "T1", 3.0, TrainConfig(), torch.Generator())
    assert out.logits.shape[1] == IDS.shape[1] - 1


def test_padding_option_is_validated():
    with pytest.raises(ConfigError, match="padding"):
        load_config(TrainConfig, None, {"model.padding": "none"})
    assert load_config(TrainConfig, None, {"model.padding": "exact"}).model.padding == "exact"


@pytest.mark.parametrize("drop_last", [False, True])
def test_length_buckets_cover_every_row_once(drop_last):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=203)
    out = length_bucketed_batches(lengths, 16, np.random.default_rng(1), drop_last)
    rows = np.concatenate(out)
    n = 203 // 16 * 16 if drop_last else 203
    assert len(rows) == n and len(np.unique(rows)) == n and rows.max() < 203
    assert sorted(len(b) for b in out) == sorted([16] * (n // 16) + ([n % 16] if n % 16 else []))
    # one window (203 rows < 50 batches): sorted batches, so their length ranges do not overlap
    spans = sorted((lengths[b].min(), lengths[b].max()) for b in out)
    assert all(hi <= lo_next for (_, hi), (lo_next, _) in zip(spans, spans[1:], strict=False))
    # a different seed gives a different batch order
    other = length_bucketed_batches(lengths, 16, np.random.default_rng(2), drop_last)
    assert [list(b) for b in other] != [list(b) for b in out]


def test_sequence_lengths_from_tensor_and_memory_map():
    """length_buckets reads real lengths from the device tensor or the memory-mapped sequences."""
    import numpy as np

    from querylearn.continual.distributed import MappedSequences
    from querylearn.continual.fit import sequence_lengths

    a = np.array([[0, 0, 3], [0, 2, 5], [1, 2, 3], [0, 0, 0]], dtype=np.int32)
    expected = [1, 2, 3, 0]
    assert sequence_lengths(torch.from_numpy(a).long(), chunk=3).tolist() == expected
    assert sequence_lengths(MappedSequences(a, torch.device("cpu")), chunk=3).tolist() == expected
