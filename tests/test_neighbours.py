"""neighbours: exact search with known duplicates, the faiss HNSW backend, the CLI."""

import numpy as np
import pytest

from querylearn.cli.main import main
from querylearn.errors import QuerylearnError
from querylearn.neighbours import VectorIndex, exact_search, have_faiss, normalise_rows, recall_at_k

DUPLICATES = {5: [11, 17, 23]}  # rows 11, 17, 23 point the same way as row 5 (scaled copies)


def table_with_duplicates(n: int = 60, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    for src, copies in DUPLICATES.items():
        for scale, row in zip((1.0, 2.5, 0.3), copies, strict=True):
            x[row] = scale * x[src]
    x[29] = 0.0  # no direction: never an answer
    return x


def test_exact_search_returns_the_duplicates_first():
    x = table_with_duplicates()
    index = VectorIndex(x, [f"k{i}" for i in range(len(x))], method="exact")
    (found,) = index.search(x[5:6], 4, exclude=[5])
    assert [n.row for n in found[:3]] == [11, 17, 23]  # ties (cosine 1) in row order
    assert all(abs(n.score - 1.0) < 1e-6 for n in found[:3]) and found[3].score < 0.999
    assert all(n.row != 29 for res in index.search(x, 59) for n in res)
    assert len(index) == 59


def test_exact_search_known_answer_and_ties():
    base = normalise_rows(np.array([[1, 0], [0, 1], [1, 1], [1, 0], [-1, 0]], dtype=np.float32))
    rows, scores = exact_search(base, normalise_rows(np.array([[1, 0.1]], dtype=np.float32)), 3)
    assert rows.tolist() == [[0, 3, 2]]  # rows 0 and 3 tie: row order
    assert np.allclose(scores[0, :2], 0.995037, atol=1e-5)
    assert recall_at_k(np.array([[0, 2, 3]]), rows) == 1.0
    assert recall_at_k(np.array([[0, 1, 4]]), rows) == pytest.approx(1 / 3)


@pytest.mark.skipif(not have_faiss(), reason="faiss-cpu not installed (pip install 'querylearn[ann]')")
def test_hnsw_finds_the_duplicates_and_recalls_exact_search():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x[100:103] = x[7] * np.array([[1.0], [3.0], [0.5]], dtype=np.float32)
    keys = [str(i) for i in range(len(x))]
    hnsw = VectorIndex(x, keys, method="hnsw", threads=1)
    exact = VectorIndex(x, keys, method="exact")
    assert hnsw.method == "hnsw" and VectorIndex(x, keys).method == "exact"  # auto: below 50,000 rows
    (found,) = hnsw.search(x[7:8], 3, exclude=[7])
    assert sorted(n.row for n in found) == [100, 101, 102]
    queries = rng.normal(size=(200, 16)).astype(np.float32)
    approx = np.array([[n.row for n in r] for r in hnsw.search(queries, 10)])
    truth = np.array([[n.row for n in r] for r in exact.search(queries, 10)])
    assert recall_at_k(approx, truth) >= 0.95


def test_method_errors():
    with pytest.raises(QuerylearnError, match="--method"):
        VectorIndex(np.eye(3), ["a", "b", "c"], method="lsh")
    with pytest.raises(QuerylearnError, match="-k"):
        VectorIndex(np.eye(3), ["a", "b", "c"]).search(np.eye(3)[:1], 0)


def test_cli_query_and_user_neighbours(toy, tmp_path, capsys):
    from querylearn.artifacts import write_npy
    from querylearn.data.vocab import QueryVocab
    from querylearn.userfile import write_user_vectors

    with pytest.raises(SystemExit):
        main(
            [
                "embed-init",
                "--data",
                str(toy),
                "--source",
                "random",
                "--dim",
                "8",
                "--out",
                str(tmp_path / "emb"),
            ]
        )
    vocab = QueryVocab.load(tmp_path / "emb" / "vocab.json")
    x = table_with_duplicates(len(vocab))
    x[0] = 0.0
    write_npy(tmp_path / "emb" / "vectors.npy", x)  # rows 11, 17, 23 duplicate row 5
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["neighbours", "--emb", str(tmp_path / "emb"), "--query", vocab.queries[5], "-k", "3"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("│")]
    assert [ln.split("│")[2].strip() for ln in lines] == [vocab.queries[i] for i in DUPLICATES[5]]
    # an unseen query on a random table: one clear line
    with pytest.raises(SystemExit) as exc:
        main(["neighbours", "--emb", str(tmp_path / "emb"), "--query", "없는 검색어"])
    assert exc.value.code == 1 and "random" in capsys.readouterr().err
    # user neighbours from a user-vector file
    ids = [f"user{i}" for i in range(len(x))]
    write_user_vectors(tmp_path / "users.parquet", ids, x, {"producer": "test"})
    with pytest.raises(SystemExit) as exc:
        main(["neighbours", "--users", str(tmp_path / "users.parquet"), "--user", "user5", "-k", "3"])
    assert exc.value.code == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("│")]
    assert [ln.split("│")[2].strip() for ln in lines] == ["user11", "user17", "user23"]
    with pytest.raises(SystemExit) as exc:
        main(["neighbours", "--users", str(tmp_path / "users.parquet"), "--user", "nobody"])
    assert exc.value.code == 1 and "nobody" in capsys.readouterr().err
