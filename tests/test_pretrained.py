"""export-model -> UserEncoder.from_pretrained -> encode; embed-users on a raw log; unseen queries."""

import json
import shutil

import kobert_tiny
import numpy as np
import pyarrow.parquet as pq
import pytest
import query_log

from querylearn.cli.main import main
from querylearn.data.dataset import load_dataset
from querylearn.errors import QuerylearnError
from querylearn.export import export_user_representations
from querylearn.pretrained import UserEncoder, export_model
from querylearn.querymap import fit_linear_map
from querylearn.userfile import read_user_vectors

TRAIN = ["--epochs", "1", "--seed", "0", "--threads", "1", "--device", "cpu", "--no-progress",
         "--model.channels", "16", "--model.dilations", "[1, 2]"]  # fmt: skip


def cli(*args) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 0, args


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A raw log -> dataset -> tiny-KoBERT table -> TERACON run (T1, T2) -> model folder; and a run
    of the same data without a table (random input embedding) -> its model folder."""
    base = tmp_path_factory.mktemp("use")
    log, tasks = query_log.write_topic_log(base / "raw")
    cli("prepare", "files", "--queries", log, "--tasks", tasks, "--seq-len", "6", "--out", base / "ds")
    cli(
        "embed-init",
        "--data",
        base / "ds",
        "--source",
        "kobert",
        "--model",
        kobert_tiny.tiny_kobert_dir(),
        "--out",
        base / "emb",
    )
    cli("train-sequence", "--data", base / "ds", "--out", base / "run", "--embeddings", base / "emb", *TRAIN)
    cli("export-model", "--run", base / "run", "--out", base / "model")
    cli("train-sequence", "--data", base / "ds", "--out", base / "run-random", *TRAIN)
    cli("export-model", "--run", base / "run-random", "--out", base / "model-random", "--task", "T1")
    return base


def dataset_histories(ds) -> list[list[str]]:
    return [[ds.vocab.queries[i] for i in row if i != 0] for row in np.asarray(ds.sequences)]


def test_model_folder_layout(work):
    config = json.loads((work / "model" / "config.json").read_text(encoding="utf-8"))
    assert config["kind"] == "querylearn-user-encoder" and config["schema_version"] == 1
    assert config["default_task"] == "T2" and [h[0] for h in config["heads"]] == ["T1", "T2"]
    assert config["normalisation"]["rule"] == "querylearn.nfc-v1" and config["normalisation"]["seq_len"] == 6
    assert config["unseen_queries"]["rule"] == "map" and config["query_table"]["source"] == "kobert"
    for name in (
        "model.safetensors",
        "vocab.json",
        "query_map.safetensors",
        "query_table/vectors.npy",
        "query_table/meta.json",
        "query_table/vocab.json",
    ):
        assert (work / "model" / name).is_file(), name
    random_config = json.loads((work / "model-random" / "config.json").read_text(encoding="utf-8"))
    assert random_config["unseen_queries"]["rule"] == "unk" and random_config["query_table"] is None
    assert random_config["default_task"] == "T1"
    assert not (work / "model-random" / "query_map.safetensors").exists()


@pytest.mark.parametrize("task", ["T1", "T2"])
def test_encode_equals_export_users(work, task):
    ds = load_dataset(work / "ds")
    ids, expected = export_user_representations(work / "run", task=task)
    enc = UserEncoder.from_pretrained(work / "model")
    got = enc.encode(dataset_histories(ds), task=task)
    assert ids == ds.user_ids and got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got, expected)


def test_encode_applies_the_normalisation(work):
    enc = UserEncoder.from_pretrained(work / "model")
    query = enc.vocab.queries[2]  # e.g. "캠핑 의자": Hangul, no Latin
    canonical = enc.encode([[query, query]])
    noisy = enc.encode(
        [[f"  {query.replace(' ', '　')}\u200b ", "", "   ", query]]
    )  # ideographic space, ZWSP
    assert np.array_equal(canonical, noisy)
    # only the last seq_len (6) queries count
    q2 = enc.vocab.queries[3]
    assert np.array_equal(enc.encode([[q2] * 3 + [query] * 6]), enc.encode([[query] * 6]))


def test_embed_users_on_the_raw_log_equals_export_users(work, tmp_path):
    cli("export-users", "--run", work / "run", "--out", tmp_path / "export.parquet")
    cli(
        "embed-users",
        "--model",
        work / "model",
        "--queries",
        work / "raw" / "log.csv",
        "--out",
        tmp_path / "log.parquet",
    )
    ids_a, vec_a, _ = read_user_vectors(tmp_path / "export.parquet")
    ids_b, vec_b, info = read_user_vectors(tmp_path / "log.parquet")
    assert ids_a == ids_b and np.array_equal(vec_a, vec_b)
    assert info["producer"] == "embed-users" and info["task"] == "T2" and info["layout"] == "embedding"
    assert info["unseen_mapped_positions"] == 0 and info["unseen_unk_positions"] == 0
    assert info["positions"] == int((np.asarray(load_dataset(work / "ds").sequences) != 0).sum())
    # the same log as Parquet (the prepare files format) gives the same file contents
    import pandas as pd

    pd.read_csv(work / "raw" / "log.csv", dtype=str).to_parquet(tmp_path / "log-in.parquet")
    cli(
        "embed-users",
        "--model",
        work / "model",
        "--queries",
        tmp_path / "log-in.parquet",
        "--out",
        tmp_path / "log2.parquet",
        "--wide",
    )
    ids_c, vec_c, info_c = read_user_vectors(tmp_path / "log2.parquet")
    assert ids_c == ids_a and np.array_equal(vec_c, vec_a) and info_c["layout"] == "wide"
    assert pq.read_schema(tmp_path / "log2.parquet").names[:3] == ["user_id", "v0", "v1"]


def test_an_unseen_query_gets_a_mapped_vector(work, tmp_path):
    enc = UserEncoder.from_pretrained(work / "model")
    words = query_log.topic_words(0)
    unseen = next(
        f"{a} {b} {c}" for a in words for b in words for c in words if f"{a} {b} {c}" not in enc.vocab.index
    )
    assert enc.maps_unseen_queries
    mapped = enc.encode_detailed([[unseen]])
    as_unk = enc.encode_detailed([[unseen]], unseen="unk")
    unk = enc.encode([["<unk>"]])
    assert mapped.n_unseen_mapped == 1 and mapped.unseen_mapped == [unseen] and mapped.n_unseen_unk == 0
    assert as_unk.n_unseen_mapped == 0 and as_unk.n_unseen_unk == 1
    assert np.array_equal(as_unk.vectors, unk) and not np.allclose(mapped.vectors, unk)
    # known answer: the mapped input vector is the map applied to the table source's vector
    from querylearn.embeddings import embed_queries
    from querylearn.querymap import load_map

    source_vec = embed_queries(work / "emb", [unseen]).vectors
    expected_row = load_map(work / "model" / "query_map.safetensors").apply(source_vec)
    got_row, empty = enc.unseen_query_vectors([unseen])
    assert not empty[0] and np.allclose(got_row, expected_row, atol=1e-6)
    # word order does not change a subword mean, so "b a" lands on the trained row of a known "a b"
    known = next(q for q in enc.vocab.queries[2:] if " ".join(q.split()[::-1]) not in enc.vocab.index)
    swapped = " ".join(known.split()[::-1])
    row, _ = enc.unseen_query_vectors([swapped])
    trained = enc.input_vectors()
    cos = trained @ row[0] / (np.linalg.norm(trained, axis=1) * np.linalg.norm(row[0]) + 1e-12)
    assert int(np.argmax(cos[2:])) + 2 == enc.vocab.index[known]
    # embed-users reports the mapped query
    log = tmp_path / "new.csv"
    log.write_text(
        f"user_id,timestamp,query\nnew1,1,{enc.vocab.queries[2]}\nnew1,2,{unseen}\n", encoding="utf-8"
    )
    cli("embed-users", "--model", work / "model", "--queries", log, "--out", tmp_path / "new.parquet")
    _, vec, info = read_user_vectors(tmp_path / "new.parquet")
    assert info["unseen_mapped_positions"] == 1 and info["unseen_mapped_queries"] == 1
    assert np.array_equal(vec, enc.encode([[enc.vocab.queries[2], unseen]]))


def test_random_table_keeps_unseen_queries_unk(work):
    enc = UserEncoder.from_pretrained(work / "model-random")
    assert not enc.maps_unseen_queries and enc.default_task == "T1"
    got = enc.encode_detailed([["전혀 없는 검색어", enc.vocab.queries[2]]])
    assert got.n_unseen_unk == 1 and got.n_unseen_mapped == 0
    assert np.array_equal(got.vectors, enc.encode([["<unk>", enc.vocab.queries[2]]]))
    with pytest.raises(QuerylearnError, match="random"):
        enc.unseen_query_vectors(["전혀 없는 검색어"])


def test_save_pretrained_round_trip(work, tmp_path):
    enc = UserEncoder.from_pretrained(work / "model")
    enc.save_pretrained(tmp_path / "copy")
    again = UserEncoder.from_pretrained(tmp_path / "copy")
    ds = load_dataset(work / "ds")
    hist = dataset_histories(ds)[:20] + [["완전히 새로운 캠핑"]]
    assert np.array_equal(enc.encode(hist), again.encode(hist))


def test_a_moved_run_directory_still_exports(work, tmp_path):
    moved = tmp_path / "moved"
    for name in ("ds", "emb", "run"):
        shutil.copytree(work / name, moved / name)
    run_meta = json.loads((moved / "run" / "run.json").read_text(encoding="utf-8"))
    assert run_meta["data"] == "../ds" and run_meta["embeddings"] == "../emb"
    cli("export-model", "--run", moved / "run", "--out", moved / "model")
    ids, vecs = export_user_representations(moved / "run")
    assert np.array_equal(
        UserEncoder.from_pretrained(moved / "model").encode(dataset_histories(load_dataset(moved / "ds"))),
        vecs,
    )


def test_errors(work, tmp_path):
    with pytest.raises(QuerylearnError, match="has learnt"):
        export_model(work / "run", tmp_path / "m", task="T9")
    with pytest.raises(SystemExit) as exc:
        main(["export-model", "--run", str(tmp_path / "none"), "--out", str(tmp_path / "m")])
    assert exc.value.code == 1
    with pytest.raises(QuerylearnError, match="no such model folder"):
        UserEncoder.from_pretrained(tmp_path / "none")
    enc = UserEncoder.from_pretrained(work / "model")
    with pytest.raises(QuerylearnError, match="holds T1, T2"):
        enc.encode([["텐트"]], task="T7")
    with pytest.raises(QuerylearnError, match="--unseen"):
        enc.encode([["텐트"]], unseen="drop")
    with pytest.raises(QuerylearnError, match="list of queries"):
        enc.encode(["텐트"])
    bad = tmp_path / "bad"
    shutil.copytree(work / "model", bad)
    cfg = json.loads((bad / "config.json").read_text(encoding="utf-8"))
    cfg["kind"] = "something-else"
    (bad / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(QuerylearnError, match="expected kind"):
        UserEncoder.from_pretrained(bad)


def test_fit_linear_map_recovers_a_known_map():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    w = rng.normal(size=(6, 4))
    b = rng.normal(size=4)
    m = fit_linear_map(x, x @ w + b, ridge=1e-9)
    assert m.r2 > 1 - 1e-9 and np.allclose(m.weight, w, atol=1e-4) and np.allclose(m.bias, b, atol=1e-4)
    assert np.allclose(m.apply(x[:3]), x[:3] @ w + b, atol=1e-4)
    with pytest.raises(QuerylearnError, match="at least 2"):
        fit_linear_map(x[:1], x[:1])


def test_neighbours_through_the_model(work, tmp_path):
    from querylearn.neighbours import query_neighbours, user_neighbours
    from querylearn.userfile import write_user_vectors

    enc = UserEncoder.from_pretrained(work / "model")
    # an unseen reordering "b a" of a known query "a b" has the same subword mean: "a b" comes first
    known = next(
        q
        for q in enc.vocab.queries[2:]
        if len(set(q.split())) == 2 and " ".join(q.split()[::-1]) not in enc.vocab.index
    )
    swapped = " ".join(known.split()[::-1])
    (res,) = query_neighbours(work / "model", [swapped], k=3)
    assert res.embedded and res.neighbours[0].key == known and res.method == "exact"
    (res,) = query_neighbours(work / "model", [known], k=3)  # a known query is not its own neighbour
    assert not res.embedded and all(n.key != known for n in res.neighbours)
    # users: the one whose only query is q is nearest to "a user who searched q"
    queries = enc.vocab.queries[2:8]
    write_user_vectors(
        tmp_path / "u.parquet", [f"user{i}" for i in range(6)], enc.encode([[q] for q in queries]), {}
    )
    (res,) = user_neighbours(tmp_path / "u.parquet", queries=[queries[3]], model=work / "model", k=2)
    assert res.neighbours[0].key == "user3" and res.neighbours[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(QuerylearnError, match="--model"):
        user_neighbours(tmp_path / "u.parquet", queries=[queries[3]])
