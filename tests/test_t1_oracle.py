"""bench/t1_oracle.py: the synthetic generator's own next-query distribution (the T1 ceiling)."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import t1_oracle  # noqa: E402  (bench/t1_oracle.py)

from querylearn.data import synthetic as S  # noqa: E402
from querylearn.data.normalize import normalize_query  # noqa: E402


def test_within_key_probabilities_known_values():
    cdf = S._key_cdf(np.array([0, 0, 1, 2, 2, 2]), np.array([1.0, 3.0, 2.0, 1.0, 1.0, 2.0]))
    assert t1_oracle._within_key(cdf) == pytest.approx([0.25, 0.75, 1.0, 0.25, 0.25, 0.5])


@pytest.fixture(scope="module")
def full_vocab_oracle():
    """An oracle over a vocabulary holding every surface form (no form falls to <unk>)."""
    tab = S._tables()
    forms = sorted({normalize_query(t) for t in tab.variant_text})
    vocab = {q: i for i, q in enumerate(["<pad>", "<unk>", *forms])}
    return t1_oracle.Oracle(tab, vocab), tab


def test_the_next_query_distribution_sums_to_one(full_vocab_oracle):
    """Every mode's mass lands on some form: P over the vocabulary sums to 1, for the true latents
    and for the plug-in estimate, and the repeat mode puts P_REPEAT / 4 on each of the last 4."""
    oracle, tab = full_vocab_oracle
    rng = np.random.default_rng(0)
    users = S._draw_users(5, tab, rng, (20, 30))
    trace: dict = {}
    _, var, _ = S._query_chunk(users, 0, 5, tab, rng, trace)
    ends = np.cumsum(users.n_queries)
    for i in range(5):
        forms = var[ends[i] - users.n_queries[i] : ends[i]]
        p = oracle.scores(
            forms[:-1], int(trace["noun"][i]), int(trace["slot"][i]), int(users.gender[i]),
            users.slot_sub[i], users.slot_noun[i], users.slot_w[i], float(users.p_ns[i]),
        )  # fmt: skip
        assert p.sum() == pytest.approx(1.0, abs=1e-9) and p.min() >= 0
        assert p[oracle.var_vocab[forms[-2]]] >= S.P_REPEAT / 4
        assert oracle.plug_in(forms[:-1]).sum() == pytest.approx(1.0, abs=1e-9)
    assert oracle.scores(np.array([7]), 0, S.N_SLOTS, 0, users.slot_sub[0], users.slot_noun[0],
                         users.slot_w[0], 0.2)[oracle.var_vocab[7]] >= S.P_REPEAT  # fmt: skip


def test_the_oracle_regenerates_the_dataset_and_beats_the_heuristics(tmp_path):
    from querylearn.data.build import BuildOptions
    from querylearn.data.sources import prepare

    prepare("synthetic", tmp_path / "d", BuildOptions(seed=3), users=300)
    import t1_heuristics  # bench/t1_heuristics.py

    res = t1_oracle.t1_oracle(tmp_path / "d", "test")
    h = t1_heuristics.t1_heuristics(tmp_path / "d", "test")
    assert res["n_users"] == h["n_users"] > 0
    assert res["matched"] == res["n_users"]  # every last query regenerated: same draws, same order
    assert res["oracle"]["mrr@5"] > h["recent-distinct"]
    assert res["oracle"]["mrr@5"] >= res["oracle_ties_last"]["mrr@5"]
