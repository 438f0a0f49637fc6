"""Parquet throughout (user vectors, embed-queries in and out) and output modes that follow the umask."""

import json
import os
import stat

import kobert_tiny
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from querylearn.cli.main import main
from querylearn.errors import DataError
from querylearn.recsys.representations import read_user_parquet
from querylearn.userfile import read_user_vectors, write_user_vectors


def run_cli(*args) -> int:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    return exc.value.code


def test_user_vectors_layouts_round_trip(tmp_path):
    ids = ["u1", "u2", "u3"]
    vecs = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    write_user_vectors(tmp_path / "a.parquet", ids, vecs, {"producer": "test"})
    write_user_vectors(tmp_path / "b.parquet", ids, vecs, {"producer": "test"}, wide=True)
    schema = pq.read_schema(tmp_path / "a.parquet")
    assert schema.names == ["user_id", "embedding"]
    assert schema.field("embedding").type == pa.list_(pa.float32(), 4)  # fixed-size list<float32>[4]
    assert pq.read_schema(tmp_path / "b.parquet").names == ["user_id", "v0", "v1", "v2", "v3"]
    for name, layout in (("a", "embedding"), ("b", "wide")):
        got_ids, got, info = read_user_vectors(tmp_path / f"{name}.parquet")
        assert got_ids == ids and np.array_equal(got, vecs) and info["layout"] == layout
        rep = read_user_parquet(tmp_path / f"{name}.parquet")  # what coldstart-eval --users-from reads
        assert rep.user_ids == ids and np.array_equal(rep.vectors, vecs)
    # pandas sees one array per row
    import pandas as pd

    assert np.array_equal(np.stack(pd.read_parquet(tmp_path / "a.parquet")["embedding"].to_list()), vecs)


def test_user_vectors_list_column_errors(tmp_path):
    table = pa.table(
        {"user_id": ["a", "b"], "embedding": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))}
    )
    pq.write_table(table, tmp_path / "ragged.parquet")
    with pytest.raises(DataError, match="row 2"):
        read_user_vectors(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"user_id": ["a"], "embedding": ["x"]}), tmp_path / "text.parquet")
    with pytest.raises(DataError, match="expected a list"):
        read_user_parquet(tmp_path / "text.parquet")


def test_export_users_writes_the_embedding_column(toy, tmp_path):
    from querylearn.export import export_user_representations

    assert (
        run_cli(
            "train-sequence",
            "--data",
            toy,
            "--out",
            tmp_path / "run",
            "--epochs",
            "1",
            "--tasks",
            "T1,T2",
            "--model.channels",
            "8",
            "--model.dilations",
            "[1]",
            "--threads",
            "1",
            "--no-progress",
        )
        == 0
    )
    assert run_cli("export-users", "--run", tmp_path / "run", "--out", tmp_path / "u.parquet") == 0
    schema = pq.read_schema(tmp_path / "u.parquet")
    assert schema.names == ["user_id", "embedding"] and schema.field("embedding").type == pa.list_(
        pa.float32(), 8
    )
    ids, vecs, info = read_user_vectors(tmp_path / "u.parquet")
    want_ids, want = export_user_representations(tmp_path / "run")
    assert ids == want_ids and np.array_equal(vecs, want) and info["kind"] == "user-representations"


@pytest.fixture(scope="module")
def kobert_table(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("kq") / "emb"
    assert (
        run_cli(
            "embed-init",
            "--data",
            toy,
            "--source",
            "kobert",
            "--model",
            kobert_tiny.tiny_kobert_dir(),
            "--out",
            out,
        )
        == 0
    )
    return out


def test_embed_queries_parquet_in_and_out(kobert_table, tmp_path):
    queries = ["검색어3", "캠핑 의자", "", "ＬＥＤ 조명"]
    (tmp_path / "q.txt").write_text("\n".join(queries) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "query": queries}), tmp_path / "q.parquet")
    assert (
        run_cli(
            "embed-queries",
            "--emb",
            kobert_table,
            "--queries",
            tmp_path / "q.txt",
            "--out",
            tmp_path / "v.npy",
        )
        == 0
    )
    assert (
        run_cli(
            "embed-queries",
            "--emb",
            kobert_table,
            "--queries",
            tmp_path / "q.parquet",
            "--out",
            tmp_path / "v.parquet",
        )
        == 0
    )
    want = np.load(tmp_path / "v.npy")
    table = pq.read_table(tmp_path / "v.parquet")
    assert table.column_names == ["query", "normalised", "embedding", "in_vocab", "empty"]
    assert table.column("query").to_pylist() == queries
    assert table.column("normalised").to_pylist() == ["검색어3", "캠핑 의자", "", "led 조명"]
    assert table.column("in_vocab").to_pylist() == [True, False, False, False]
    assert table.column("empty").to_pylist() == [False, False, True, False]
    got = np.stack(table.column("embedding").to_pylist()).astype(np.float32)
    assert np.array_equal(got, want)
    meta = json.loads(table.schema.metadata[b"querylearn"])
    assert meta["kind"] == "query-vectors" and meta["n_queries"] == 4 and meta["n_in_vocab"] == 1
    # a Parquet file without a 'query' column, and a text output suffix, are refused in one line
    pq.write_table(pa.table({"text": queries}), tmp_path / "noq.parquet")
    assert (
        run_cli(
            "embed-queries",
            "--emb",
            kobert_table,
            "--queries",
            tmp_path / "noq.parquet",
            "--out",
            tmp_path / "x.npy",
        )
        == 1
    )
    assert (
        run_cli(
            "embed-queries",
            "--emb",
            kobert_table,
            "--queries",
            tmp_path / "q.txt",
            "--out",
            tmp_path / "x.parquet.txt",
        )
        == 1
    )
    assert not (tmp_path / "x.parquet.txt").exists() and not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_output_files_follow_the_umask(toy, tmp_path, umask):
    from querylearn.artifacts import write_json, write_npy

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        write_npy(tmp_path / "a.npy", np.zeros(3))
        write_user_vectors(tmp_path / "u.parquet", ["a"], np.zeros((1, 2)), {})
        assert (
            run_cli(
                "embed-init", "--data", toy, "--source", "random", "--dim", "4", "--out", tmp_path / "emb"
            )
            == 0
        )
        assert (
            run_cli(
                "train-sequence",
                "--data",
                toy,
                "--out",
                tmp_path / "run",
                "--epochs",
                "1",
                "--tasks",
                "T1",
                "--model.channels",
                "8",
                "--model.dilations",
                "[1]",
                "--threads",
                "1",
                "--no-progress",
            )
            == 0
        )
        assert run_cli("export-users", "--run", tmp_path / "run", "--out", tmp_path / "users.parquet") == 0
        assert run_cli("export-model", "--run", tmp_path / "run", "--out", tmp_path / "model") == 0
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 15
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
