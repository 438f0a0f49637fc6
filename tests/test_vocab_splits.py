import numpy as np

from querylearn.data.splits import TEST, TRAIN, VALID, permuted_split, split_sizes
from querylearn.data.vocab import PAD_ID, UNK_ID, QueryVocab


def test_vocab_order_ids_and_unknown(tmp_path):
    vocab = QueryVocab.build({"b": 3, "a": 3, "c": 5, "rare": 1}, min_count=2)
    assert vocab.queries == ["<pad>", "<unk>", "c", "a", "b"]  # count desc, ties by code point
    assert vocab.counts == [0, 1, 5, 3, 3]  # the rare query's count lands on <unk>
    assert vocab.id("c") == 2 and vocab.id("rare") == UNK_ID and vocab.id("never") == UNK_ID
    assert vocab.id("  C ") == 2  # normalised before lookup
    vocab.save(tmp_path / "v.json")
    again = QueryVocab.load(tmp_path / "v.json")
    assert again.queries == vocab.queries and again.counts == vocab.counts and again.min_count == 2
    assert PAD_ID == 0


def test_vocab_from_raw_queries_normalises():
    vocab = QueryVocab.from_queries(["캠핑의자", "캠핑의자 ", "ＬＥＤ", "led", "  "])
    assert vocab.queries[2:] == ["led", "캠핑의자"]
    assert vocab.counts[2:] == [2, 2]


def test_split_sizes_follow_the_80_5_15_rule():
    assert split_sizes(100) == (80, 5, 15)
    assert split_sizes(1000) == (800, 50, 150)
    assert split_sizes(4) == (4, 0, 0)  # floor(0.2*4)=0: everything trains (no negative-slice bug B32)
    assert split_sizes(7) == (6, 1, 0)


def test_permuted_split_is_deterministic_and_disjoint():
    a = permuted_split(1000, seed=3)
    b = permuted_split(1000, seed=3)
    c = permuted_split(1000, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (a == TRAIN).sum() == 800 and (a == VALID).sum() == 50 and (a == TEST).sum() == 150
