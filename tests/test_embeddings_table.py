"""embed-init / embed-queries end to end: random source, PCA, the table loader, CLI errors, determinism."""

from __future__ import annotations

from pathlib import Path

import kobert_tiny  # tests/, put on sys.path by conftest.py
import numpy as np
import pytest

from querylearn.artifacts import file_sha256, read_json, write_json
from querylearn.cli.main import main
from querylearn.data.vocab import QueryVocab
from querylearn.embeddings import (
    embed_init,
    embed_queries,
    load_embedding_table,
    resolve_config,
)
from querylearn.embeddings.project import fit_pca
from querylearn.embeddings.random_init import random_table
from querylearn.errors import ArtifactError, ConfigError, QuerylearnError


@pytest.fixture(scope="module")
def kobert_dir() -> Path:
    return kobert_tiny.tiny_kobert_dir()


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


# -- random ----------------------------------------------------------------------------------------


def test_random_table_scale_and_pad():
    table = random_table(100, 16, seed=3)
    assert table.dtype == np.float32 and table.shape == (100, 16)
    assert not table[0].any()
    bound = np.sqrt(1 / 100)
    assert np.abs(table[1:]).max() <= bound and np.abs(table[1:]).max() > 0.9 * bound
    assert abs(float(table[1:].mean())) < 0.01  # centred
    np.testing.assert_array_equal(table, random_table(100, 16, seed=3))
    assert not np.array_equal(table, random_table(100, 16, seed=4))


def test_embed_init_random_defaults_and_bytes(toy, tmp_path):
    cfg = resolve_config(source="random", seed=7)
    assert cfg.dim == 256 and cfg.pooling == "none"
    t1 = embed_init(toy, tmp_path / "a", cfg)
    embed_init(toy, tmp_path / "b", cfg)
    assert (tmp_path / "a" / "vectors.npy").read_bytes() == (tmp_path / "b" / "vectors.npy").read_bytes()
    loaded = load_embedding_table(tmp_path / "a")
    vocab = QueryVocab.load(toy / "vocab.json")
    assert loaded.queries == vocab.queries and loaded.vectors.shape == (len(vocab), 256)
    np.testing.assert_array_equal(loaded.vectors, t1.vectors)
    loaded.check_vocab(vocab)
    meta = loaded.meta
    assert meta["kind"] == "embedding-table" and meta["schema_version"] == 1 and meta["seed"] == 7
    assert meta["dataset"]["vocab_sha256"] == file_sha256(toy / "vocab.json") and meta["projection"] is None
    # vocab.json is the dataset's vocabulary, byte for byte
    assert (tmp_path / "a" / "vocab.json").read_bytes() == (toy / "vocab.json").read_bytes()


def test_embed_queries_refuses_random_table(toy, tmp_path, capsys):
    embed_init(toy, tmp_path / "r", resolve_config(source="random", dim=8))
    with pytest.raises(QuerylearnError, match="random"):
        embed_queries(tmp_path / "r", ["캠핑 의자"])
    (tmp_path / "q.txt").write_text("캠핑 의자\n", encoding="utf-8")
    code, _, err = run_cli(
        [
            "embed-queries",
            "--emb",
            str(tmp_path / "r"),
            "--queries",
            str(tmp_path / "q.txt"),
            "--out",
            str(tmp_path / "q.npy"),
        ],
        capsys,
    )
    assert code == 1 and "random" in err and len(err.strip().splitlines()) == 1


# -- PCA -------------------------------------------------------------------------------------------


def test_pca_by_hand():
    # points on the line y = 2x in 3-d plus a tiny z: the first component carries ~all variance
    t = np.linspace(-1, 1, 11)
    x = np.stack([t, 2 * t, 1e-3 * t**2], axis=1) + np.array([5.0, 0.0, 1.0])
    proj = fit_pca(x, 1)
    np.testing.assert_allclose(proj.mean, x.mean(0))
    np.testing.assert_allclose(proj.components[0], [1 / np.sqrt(5), 2 / np.sqrt(5), 0.0], atol=1e-3)
    assert proj.explained_variance_ratio[0] > 0.999999
    np.testing.assert_allclose(proj.apply(x)[:, 0], t * np.sqrt(5), atol=1e-3)
    with pytest.raises(QuerylearnError, match="--dim 4"):
        fit_pca(x, 4)


def test_kobert_pca_table_and_unseen_queries(toy, tmp_path, kobert_dir):
    cfg = resolve_config(source="kobert", model=str(kobert_dir), pooling="contextual", dim=6)
    table = embed_init(toy, tmp_path / "e", cfg)
    assert table.vectors.shape == (len(table.queries), 6) and not table.vectors[0].any()
    proj = table.meta["projection"]
    assert proj["method"] == "pca" and len(proj["explained_variance_ratio"]) == 6
    assert 0 < proj["explained_variance_total"] <= 1 + 1e-9
    assert np.load(tmp_path / "e" / "projection_components.npy", allow_pickle=False).shape == (6, 32)
    # unseen-query path reproduces the table rows for known queries (same source, settings, projection)
    queries = table.queries[2:8]
    result = embed_queries(tmp_path / "e", [q.upper() + "  " for q in queries] + ["", "완전히 새로운 검색어"])
    np.testing.assert_allclose(result.vectors[:6], table.vectors[2:8], atol=1e-5)
    assert result.in_vocab.tolist() == [True] * 6 + [False, False]
    np.testing.assert_array_equal(result.vectors[6], table.vectors[1])  # empty -> <unk> row
    assert result.empty.tolist() == [False] * 6 + [True, False]


def test_contextual_and_subword_determinism(toy, tmp_path, kobert_dir):
    for pooling in ("subword-mean", "contextual"):
        cfg = resolve_config(source="kobert", model=str(kobert_dir), pooling=pooling)
        embed_init(toy, tmp_path / f"{pooling}1", cfg)
        embed_init(toy, tmp_path / f"{pooling}2", cfg)
        a = (tmp_path / f"{pooling}1" / "vectors.npy").read_bytes()
        assert a == (tmp_path / f"{pooling}2" / "vectors.npy").read_bytes()
    meta = read_json(tmp_path / "subword-mean1" / "meta.json")
    assert meta["method"] == "kobert-subword-mean" and meta["dim"] == meta["native_dim"] == 32
    assert meta["model"]["sha256"]["spiece.model"] and meta["tokenizer"]["vocab_size"] == 400
    for key in ("n_only_unk", "n_only_single_chars", "n_empty", "n_with_unk"):
        assert isinstance(meta["counts"][key], int)
    assert set(meta["timing"]) >= {"load_s", "embed_s", "total_s"}


# -- loader checks ---------------------------------------------------------------------------------


def test_loader_rejects_wrong_kind_and_shape(toy, tmp_path):
    embed_init(toy, tmp_path / "t", resolve_config(source="random", dim=4))
    meta = read_json(tmp_path / "t" / "meta.json")
    write_json(tmp_path / "t" / "meta.json", {**meta, "kind": "vocab"})
    with pytest.raises(ArtifactError, match="expected kind 'embedding-table'"):
        load_embedding_table(tmp_path / "t")
    write_json(tmp_path / "t" / "meta.json", meta)
    np.save(tmp_path / "t" / "vectors.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ArtifactError, match="3 rows but"):
        load_embedding_table(tmp_path / "t")
    with pytest.raises(ArtifactError, match="no such embedding-table"):
        load_embedding_table(tmp_path / "missing")


def test_check_vocab_names_first_difference(toy, tmp_path):
    table = embed_init(toy, tmp_path / "t", resolve_config(source="random", dim=4))
    other = list(table.queries)
    other[5] = "딴 검색어"
    with pytest.raises(ArtifactError, match="query id 5"):
        table.check_vocab(other)


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_end_to_end(toy, tmp_path, kobert_dir, capsys):
    emb = tmp_path / "emb"
    code, out, err = run_cli(
        [
            "embed-init",
            "--data",
            str(toy),
            "--source",
            "kobert",
            "--model",
            str(kobert_dir),
            "--out",
            str(emb),
            "--dim",
            "5",
            "--seed",
            "1",
        ],
        capsys,
    )
    assert code == 0, err
    assert "kobert-subword-mean" in out
    assert sorted(p.name for p in emb.iterdir()) == [
        "config.toml",
        "meta.json",
        "projection_components.npy",
        "projection_mean.npy",
        "vectors.npy",
        "vocab.json",
    ]
    vectors = np.load(emb / "vectors.npy", allow_pickle=False)
    assert vectors.dtype == np.float32 and vectors.shape == (32, 5)
    (tmp_path / "q.txt").write_text("검색어3\n새 검색어\n\n😀\n", encoding="utf-8")
    code, out, err = run_cli(
        [
            "embed-queries",
            "--emb",
            str(emb),
            "--queries",
            str(tmp_path / "q.txt"),
            "--out",
            str(tmp_path / "q.npy"),
        ],
        capsys,
    )
    assert code == 0, err
    q = np.load(tmp_path / "q.npy", allow_pickle=False)
    side = read_json(tmp_path / "q.npy.json")
    assert q.shape == (4, 5) and side["n_queries"] == 4 and side["in_vocab"] == [True, False, False, False]
    np.testing.assert_allclose(q[0], vectors[table_id(emb, "검색어3")], atol=1e-5)
    np.testing.assert_array_equal(q[2], vectors[1])


def table_id(emb: Path, query: str) -> int:
    return QueryVocab.load(emb / "vocab.json").id(query)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--source", "kobert", "--model", "/nonexistent/kobert"], "no such folder"),
        (["--source", "random", "--pooling", "contextual"], "--pooling does not apply"),
        (["--source", "hf"], "--source hf needs --model"),
        (["--source", "e5", "--model", "x"], "--model does not apply to --source e5"),
        (["--source", "random", "--dim", "0"], "--dim 0"),
    ],
)
def test_cli_bad_flags_one_line(toy, tmp_path, capsys, args, expected):
    # (a --source or --pooling outside the choices is refused by the CLI itself: test_cli_behaviour.py)
    code, _, err = run_cli(["embed-init", "--data", str(toy), "--out", str(tmp_path / "o"), *args], capsys)
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1


def test_cli_missing_dataset_one_line(tmp_path, capsys):
    code, _, err = run_cli(
        ["embed-init", "--data", str(tmp_path / "nope"), "--source", "random", "--out", str(tmp_path / "o")],
        capsys,
    )
    assert code == 1 and "dataset.json" in err and len(err.strip().splitlines()) == 1


def test_cli_hub_id_offline_tells_how_to_pass_local_copy(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run_cli(
        ["embed-init", "--data", str(toy), "--source", "kobert", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 1 and "--model /path/to/local/kobert-base-v1" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_pca_dim_too_large(toy, tmp_path, kobert_dir, capsys):
    code, _, err = run_cli(
        [
            "embed-init",
            "--data",
            str(toy),
            "--source",
            "kobert",
            "--model",
            str(kobert_dir),
            "--out",
            str(tmp_path / "o"),
            "--dim",
            "64",
        ],
        capsys,
    )
    assert code == 1 and "--dim 64" in err


def test_resolve_config_errors_are_config_errors():
    with pytest.raises(ConfigError):
        resolve_config(source="random", segment="kiwi")
    assert resolve_config(source="kobert").model == "skt/kobert-base-v1"
    assert resolve_config(source="e5").pooling == "sentence"


def test_cli_embed_queries_bad_inputs_one_line(toy, tmp_path, capsys):
    code, _, err = run_cli(
        [
            "embed-queries",
            "--emb",
            str(tmp_path / "none"),
            "--queries",
            str(tmp_path / "q.txt"),
            "--out",
            str(tmp_path / "o.npy"),
        ],
        capsys,
    )
    assert code == 1 and "no such embedding-table directory" in err and len(err.strip().splitlines()) == 1
    embed_init(toy, tmp_path / "emb", resolve_config(source="random", dim=4))
    code, _, err = run_cli(
        [
            "embed-queries",
            "--emb",
            str(tmp_path / "emb"),
            "--queries",
            str(tmp_path / "q.txt"),
            "--out",
            str(tmp_path / "o.npy"),
        ],
        capsys,
    )
    assert code == 1 and "queries file not found" in err
    (tmp_path / "bad.txt").write_bytes("좋은\n".encode() + b"\xff\xfe\n")
    from querylearn.embeddings.build import read_queries_file

    with pytest.raises(QuerylearnError, match="line 2: not UTF-8"):
        read_queries_file(tmp_path / "bad.txt")
