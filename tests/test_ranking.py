"""Chunked target ranks (querylearn.ranking) equal the full computation, ties included."""

import numpy as np
import pytest
import torch

from querylearn.config import load_config
from querylearn.continual.config import TrainConfig
from querylearn.continual.data import task_data
from querylearn.continual.evaluation import evaluate
from querylearn.data.dataset import load_dataset
from querylearn.metrics import ranking_metrics, ranks_from_scores
from querylearn.models.user_encoder import UserEncoder
from querylearn.ranking import target_ranks

TINY = {"model.channels": 16, "model.dilations": [1, 2], "threads": 1}


def _linear(weight, bias):
    def score(h, cand):
        if cand is None:
            return torch.nn.functional.linear(h, weight, bias)
        return torch.nn.functional.linear(h, weight[cand], bias[cand])

    return score


def test_chunked_ranks_equal_full_with_exact_ties():
    # small integers: every dot product is exact in float32, so ties are real ties in both paths
    g = torch.Generator().manual_seed(0)
    n, c, b = 1000, 8, 37
    weight = torch.randint(-2, 3, (n, c), generator=g).float()
    bias = torch.randint(-1, 2, (n,), generator=g).float()
    hidden = torch.randint(-2, 3, (b, c), generator=g).float()
    target = torch.randint(0, n, (b,), generator=g)
    target[0] = 0  # the excluded class as a target: -inf, ranked below every other class
    score = _linear(weight, bias)
    full = ranks_from_scores(
        np.where(np.arange(n) == 0, -np.inf, score(hidden, None).numpy()), target.numpy()
    )
    assert (full[1:] > 0).any() and len(set(full.tolist())) > 5  # ties and spread: a real check
    for chunk in (n, 64, 333, 1):
        got = target_ranks(hidden, score, n, target, excluded=(0,), chunk=chunk).numpy()
        np.testing.assert_array_equal(got, full)
    assert full[0] == n - 1


def test_chunked_ranks_random_logits_match():
    g = torch.Generator().manual_seed(1)
    n, c, b = 5000, 16, 64
    weight, bias = torch.randn(n, c, generator=g), torch.randn(n, generator=g)
    hidden, target = torch.randn(b, c, generator=g), torch.randint(0, n, (b,), generator=g)
    score = _linear(weight, bias)
    full = target_ranks(hidden, score, n, target, chunk=n)
    np.testing.assert_array_equal(target_ranks(hidden, score, n, target, chunk=512), full)
    m_full, m_chunk = ranking_metrics(full.numpy()), ranking_metrics(
        target_ranks(hidden, score, n, target, chunk=777).numpy())
    assert m_full == m_chunk


def test_chunk_must_be_positive():
    with pytest.raises(ValueError, match="chunk"):
        target_ranks(torch.zeros(1, 2), lambda h, c: h, 2, torch.zeros(1, dtype=torch.int64), chunk=0)


@pytest.mark.parametrize("head", ["softmax", "tied", "copy", "tied-copy"])
def test_evaluate_chunked_equals_full(toy, head):
    torch.manual_seed(0)
    ds = load_dataset(toy)
    cfg = load_config(TrainConfig, None, TINY)
    t1 = task_data(ds, "T1")  # next_query over the whole vocabulary (padding excluded)
    model = UserEncoder(len(ds.vocab), cfg.model, masking="relation", next_query_task="T1",
                        next_query_head=head)
    model.add_task("T1", len(ds.vocab))
    seqs = torch.as_tensor(ds.sequences.astype(np.int64))
    full = evaluate(model, t1, "test", seqs, config=cfg, batch_size=16)
    assert len(ds.vocab) > 8
    for chunk in (8, 3):
        assert evaluate(model, t1, "test", seqs, config=cfg, batch_size=16, class_chunk=chunk) == full
