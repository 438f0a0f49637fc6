"""KoBERT tokenisation (re-implemented on sentencepiece) and the two poolings, on a tiny KoBERT-shaped
model."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import kobert_tiny  # tests/, put on sys.path by conftest.py
import numpy as np
import pytest

from querylearn.embeddings.base import TokenizedBatch
from querylearn.embeddings.kobert import KoBERTTokenizer, load_kobert
from querylearn.errors import QuerylearnError

GOLDEN_TEXT = "한국어 모델을 공유합니다."
GOLDEN_IDS = [2, 4958, 6855, 2046, 7088, 1050, 7843, 54, 3]


@pytest.fixture(scope="module")
def kobert_dir() -> Path:
    return kobert_tiny.tiny_kobert_dir()


@pytest.fixture(scope="module")
def tok(kobert_dir) -> KoBERTTokenizer:
    return KoBERTTokenizer.from_dir(kobert_dir)


def _reference_ids(tok: KoBERTTokenizer, text: str) -> list[int]:
    """Independent reference for texts without ',' or '[': XLNet preprocessing, then sentencepiece."""
    t = " ".join(text.strip().split())
    t = "".join(c for c in unicodedata.normalize("NFKD", t) if not unicodedata.combining(c))
    return tok.sp.encode(t, out_type=int)


def test_special_token_layout(tok):
    assert [tok.sp.IdToPiece(i) for i in range(5)] == ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
    ids = tok.encode("캠핑 의자")
    assert ids[0] == 2 and ids[-1] == 3 and 0 < len(ids) - 2
    assert tok.encode("캠핑 의자", add_special_tokens=False) == ids[1:-1]
    assert tok.tokenize("캠핑")[0].startswith("\u2581")  # the ▁ word-start convention


@pytest.mark.parametrize(
    "text", ["캠핑 의자", GOLDEN_TEXT, "  여름   원피스 ", "ＬＥＤ 조명", "café 커피", "ㅋㅋ"]
)
def test_ids_match_reference_steps(tok, text):
    assert tok.encode(text, add_special_tokens=False) == _reference_ids(tok, text)


AWKWARD_SPACES = [
    "",
    "   ",
    " 캠핑\t의자 ",
    "a\u3000b",
    "\u00a8x",
    "x\u00a0 y",
    "``인용''",
    "\x1c가\x1d",
    "é 커피 ",
    "\u2028줄",
]


def test_batch_encode_equals_single(tok):
    texts = ["캠핑 의자", "1,000원 할인", "[MASK] 의자", "가방" * 30, "SELECT * FROM t;", *AWKWARD_SPACES]
    # the digit-comma rule and special literals inside the batch (the re-encodings are cached per
    # piece: the repeated "1,000" must come out the same both times)
    texts += [
        "가격 12,000[SEP]3,4",
        "[CLS][SEP]",
        "\uff0c1\uff0c2",
        "[UNK]",
        "[",
        "a[b",
        "1,2,3",
        "x3,",
        "1,000원",
        "[MASK]1,000원,",
        "",
        "[SEP] ",
    ]
    for group in (texts, texts + ["줄\n바꿈"], [t for t in texts if "," not in t and "[" not in t]):
        batch = tok.encode_batch(group)
        for i, t in enumerate(group):
            assert batch.ids(i).tolist() == tok.encode(t, add_special_tokens=False), repr(t)


def test_preprocess_many_equals_loop(tok):
    for group in (AWKWARD_SPACES, ["café", "캠핑 의자", "ｆｕｌｌ"], ["abc", "a b"]):
        assert tok.preprocess_many(group) == [tok.preprocess(t) for t in group]
    assert tok.preprocess_many([]) == [] and tok.encode_batch([]).n_queries == 0


class _StubSP:
    """Sentencepiece stand-in with fixed outputs, to pin KoBERT's digit-comma rule by hand."""

    def __init__(self, table):
        self.table = table

    def encode(self, text, out_type=str):
        return list(self.table[text])


def test_digit_comma_rule_by_hand(tok, monkeypatch):
    stub = _StubSP(
        {
            "가격 12,000": ["▁가격", "▁12,", "000"],  # piece starts with ▁: kept as re-encoded
            "12": ["▁12"],
            "x3,": ["▁x", "3,"],  # no ▁ on the piece: the added ▁ is removed
            "3": ["▁3"],
            "y4,": ["▁y", "4,"],
            "4": ["▁", "4"],  # a bare ▁ from re-encoding is dropped
        }
    )
    monkeypatch.setattr(tok, "sp", stub)
    monkeypatch.setattr(tok, "preprocess", lambda t: t)
    assert tok.tokenize("가격 12,000") == ["▁가격", "▁12", ",", "000"]
    assert tok.tokenize("x3,") == ["▁x", "3", ","]
    assert tok.tokenize("y4,") == ["▁y", "4", ","]


def test_special_literals_are_split_out(tok):
    assert tok.encode("[MASK] 의자", add_special_tokens=False)[0] == 4
    assert tok.encode("의자[SEP]", add_special_tokens=False)[-1] == 3
    # lower-case look-alikes (what normalize_query produces) are ordinary text
    assert 4 not in tok.encode("[mask]", add_special_tokens=False)


def test_awkward_inputs_tokenise_as_documented(tok):
    assert tok.encode("", add_special_tokens=False) == []
    assert tok.encode(" \t\n ", add_special_tokens=False) == []
    assert 0 in tok.encode("😀", add_special_tokens=False)  # not in the vocabulary -> [UNK]
    # compatibility jamo become conjoining jamo (NFKD), exactly as KoBERTTokenizer does
    assert tok.tokenize("ㅋㅋ") == ["\u2581" + "\u110f\u110f"]
    assert tok.encode("ＬＥＤ", add_special_tokens=False) == tok.encode("LED", add_special_tokens=False)
    for text in [
        "<script>alert(1)</script>",
        "' OR 1=1; DROP TABLE users;--",
        "가" * 500,
        "캠핑 chair キャンプ 露营 😀",
    ]:
        ids = tok.encode(text)
        assert ids[0] == 2 and ids[-1] == 3 and all(0 <= i < tok.vocab_size for i in ids)


@pytest.mark.skipif(
    not os.environ.get("QUERYLEARN_KOBERT_DIR"),
    reason="set QUERYLEARN_KOBERT_DIR to a local skt/kobert-base-v1 copy to run the golden test",
)
def test_golden_real_kobert():
    tok = KoBERTTokenizer.from_dir(os.environ["QUERYLEARN_KOBERT_DIR"])
    assert tok.vocab_size == 8002
    assert tok.encode(GOLDEN_TEXT) == GOLDEN_IDS


def test_not_a_kobert_spiece_model(tmp_path):
    import sentencepiece as spm

    (tmp_path / "c.txt").write_text("가나다 라마 바사\n" * 50, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "c.txt"),
        model_prefix=str(tmp_path / "m"),
        vocab_size=12,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(QuerylearnError, match=r"id 2 is '.*', KoBERT's layout needs \[CLS\]"):
        KoBERTTokenizer(tmp_path / "m.model")


# -- poolings --------------------------------------------------------------------------------------


def _weights(kobert_dir: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    state = load_file(str(kobert_dir / "model.safetensors"))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    return state[key].astype(np.float64)


def test_subword_mean_equals_hand_computed_means(kobert_dir, tok):
    emb = load_kobert(
        str(kobert_dir), pooling="subword-mean", include_special=False, batch_size=8, max_length=64
    )
    weight = _weights(kobert_dir)
    texts = ["캠핑 의자", "이케아 벤치", "노트북 가방", "ㅋㅋ"]
    out = emb.embed(texts)
    for i, t in enumerate(texts):
        ids = _reference_ids(tok, t)
        np.testing.assert_allclose(out.vectors[i], weight[ids].mean(0), atol=1e-6)
    # with [CLS]/[SEP]: (sum of content rows + E[2] + E[3]) / (n + 2)
    emb_sp = load_kobert(
        str(kobert_dir), pooling="subword-mean", include_special=True, batch_size=8, max_length=64
    )
    ids = _reference_ids(tok, "캠핑 의자")
    expected = (weight[ids].sum(0) + weight[2] + weight[3]) / (len(ids) + 2)
    np.testing.assert_allclose(emb_sp.embed(["캠핑 의자"]).vectors[0], expected, atol=1e-6)
    np.testing.assert_allclose(emb.embed_unknown(), weight[0], atol=1e-6)


def test_subword_mean_two_rows_by_hand():
    import torch

    from querylearn.embeddings.pooling import subword_mean

    weight = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    batch = TokenizedBatch.from_lists([[1, 2], [3], [], [1, 1, 3]])
    vectors, empty = subword_mean(weight, batch)
    np.testing.assert_allclose(vectors, [[2.0, 3.0], [5.0, 9.0], [0.0, 0.0], [7 / 3, 13 / 3]], rtol=1e-6)
    assert empty.tolist() == [False, False, True, False]


def test_contextual_pooling_ignores_padding(kobert_dir, tok):
    import torch

    emb = load_kobert(
        str(kobert_dir), pooling="contextual", include_special=False, batch_size=16, max_length=64
    )
    short, long = "캠핑 의자", " ".join(["노트북 가방 여름 원피스"] * 6)
    alone = emb.pool(tok.encode_batch([short]))[0][0]
    batched = emb.pool(tok.encode_batch([short, long]))[0]
    assert len(tok.encode(long)) > 3 * len(tok.encode(short))
    np.testing.assert_allclose(batched[0], alone, atol=1e-5)
    # and it is the mean over the content positions of [CLS] q [SEP]
    ids = tok.encode(short)
    with torch.inference_mode():
        hidden = emb.model(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    np.testing.assert_allclose(alone, hidden[1:-1].mean(0), atol=1e-5)
    emb.include_special = True
    np.testing.assert_allclose(emb.pool(tok.encode_batch([short, long]))[0][0], hidden.mean(0), atol=1e-5)


@pytest.mark.parametrize("pooling", ["subword-mean", "contextual"])
def test_awkward_inputs_embed_without_crash(kobert_dir, pooling):
    emb = load_kobert(str(kobert_dir), pooling=pooling, include_special=False, batch_size=4, max_length=512)
    assert emb.max_length == 64  # clamped to the model's position embeddings
    texts = [
        "",
        "   ",
        "😀🔥",
        "가" * 500,
        "캠핑 chair キャンプ 露营",
        "ㅋㅋ",
        "ＬＥＤ 조명",
        "SELECT * FROM users WHERE 1=1; --",
        "<b>의자</b>&nbsp;",
        "1,000원 할인",
    ]
    out = emb.embed(texts)
    assert out.vectors.shape == (len(texts), emb.native_dim) and np.isfinite(out.vectors).all()
    assert out.empty.tolist() == [True, True] + [False] * (len(texts) - 2)
    assert out.counts["n_empty"] == 2 and out.counts["n_queries"] == len(texts)
    assert out.counts["n_truncated"] == (1 if pooling == "contextual" else 0)


@pytest.mark.parametrize("pooling", ["subword-mean", "contextual"])
def test_no_queries_gives_empty_matrix(kobert_dir, pooling):
    emb = load_kobert(str(kobert_dir), pooling=pooling, include_special=False, batch_size=4, max_length=64)
    out = emb.embed([])
    assert out.vectors.shape == (0, emb.native_dim) and out.counts["n_queries"] == 0


@pytest.mark.parametrize("chunk", [1, 2, 3, 4096])
def test_subword_mean_blocks_by_hand(monkeypatch, chunk):
    """The lookup in chunks (``pooling.CHUNK`` queries per embedding_bag call) gives the hand-computed
    means at every chunk size, including chunks that end on an empty query, with and without
    [CLS]/[SEP]."""
    import torch

    from querylearn.embeddings import pooling

    monkeypatch.setattr(pooling, "CHUNK", chunk)
    weight = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])
    batch = TokenizedBatch.from_lists([[1, 2], [3], [], [1, 1, 3], [2]])
    vectors, empty = pooling.subword_mean(weight, batch)
    expected = [[2.0, 3.0], [5.0, 9.0], [0.0, 0.0], [7 / 3, 13 / 3], [3.0, 4.0]]
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert vectors.dtype == np.float32 and empty.tolist() == [False, False, True, False, False]
    # extra ids 0 and 3: (content sum + E[0] + E[3]) / (n + 2); the empty query holds the extras' mean
    vectors, _ = pooling.subword_mean(weight, batch, extra_ids=(0, 3))
    expected = [[9 / 4, 15 / 4], [10 / 3, 6.0], [5 / 2, 9 / 2], [12 / 5, 22 / 5], [8 / 3, 13 / 3]]
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)


@pytest.mark.parametrize("buffers", ["used", "refused", "missing"])
def test_flat_ids_equal_the_public_encode(kobert_dir, monkeypatch, buffers):
    """``encode_batch`` reads sentencepiece's per-text id buffers when they give the public call's
    ids on a probe, and otherwise (an entry point that fails or is missing) the public call: the ids
    are the same either way, including the digit-comma texts spliced in."""
    fresh = KoBERTTokenizer.from_dir(kobert_dir)
    if buffers == "refused":
        monkeypatch.setattr(fresh, "_buffer_ids", lambda pre: (_ for _ in ()).throw(TypeError("changed")))
    if buffers == "missing":
        monkeypatch.setattr(fresh, "sp", _NoBuffers(fresh.sp))
    texts = [
        "캠핑 의자",
        "",
        "1,000원 할인",
        "가격 12,000",
        "ㅋㅋ",
        "x3,",
        "노트북 가방 여름",
        "😀",
        "1,2,3",
    ] * 40
    batch = fresh.encode_batch(texts)
    assert fresh._buffers_ok is (buffers == "used")
    for i, text in enumerate(texts[:9]):
        assert batch.ids(i).tolist() == fresh.encode(text, add_special_tokens=False), repr(text)
    assert batch.n_queries == len(texts) and batch.offsets[-1] == 40 * batch.offsets[9]


class _NoBuffers:
    """A sentencepiece processor without the buffer entry point (older sentencepiece)."""

    def __init__(self, sp):
        self._sp = sp
        self._processor = object()

    def __getattr__(self, name):
        return getattr(self._sp, name)
