"""The generic `files` source: sequences, labels, splits, interactions and every bad-input error."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from querylearn.cli.main import main
from querylearn.data.build import BuildOptions
from querylearn.data.dataset import load_dataset
from querylearn.data.sources import prepare_files
from querylearn.errors import DataError, QuerylearnError

TASKS = """
[[task]]
name = "T1"
kind = "next_query"

[[task]]
name = "T2"
kind = "multi_target"
labels = "wish.csv"

[[task]]
name = "T3"
kind = "classify"
labels = "gender.csv"
"""


def write_files(d: Path, n_users: int = 40) -> dict[str, Path]:
    rows = []
    for u in range(n_users):
        for t in range(5 + u % 3):
            rows.append((f"u{u}", 1000 + 10 * t, f"검색어 {(u + t) % 7}"))
    rows.append(("u0", 5, "  "))  # empty after normalisation: dropped and counted
    pd.DataFrame(rows, columns=["user_id", "timestamp", "query"]).to_csv(d / "log.csv", index=False)
    wish = [(f"u{u}", f"cat{(u + k) % 4}") for u in range(n_users) for k in range(1 + u % 2)]
    wish.append(("stranger", "cat1"))  # unknown user: skipped and counted
    pd.DataFrame(wish, columns=["user_id", "label"]).to_csv(d / "wish.csv", index=False)
    pd.DataFrame(
        [(f"u{u}", "F" if u % 2 else "M") for u in range(n_users)], columns=["user_id", "label"]
    ).to_csv(d / "gender.csv", index=False)
    pd.DataFrame(
        [(f"u{u}", f"item{(u + j) % 9}", 2000 + j) for u in range(n_users) for j in range(1 + u % 3)],
        columns=["user_id", "item_id", "timestamp"],
    ).to_csv(d / "inter.csv", index=False)
    (d / "tasks.toml").write_text(TASKS, encoding="utf-8")
    return {"queries": d / "log.csv", "tasks": d / "tasks.toml", "interactions": d / "inter.csv"}


def test_files_source_builds_the_contract(tmp_path):
    f = write_files(tmp_path)
    m = prepare_files(tmp_path / "ds", **f, opts=BuildOptions(seq_len=6))
    ds = load_dataset(tmp_path / "ds")
    assert m["n_users"] == 40 and ds.seq_len == 6 and m["synthetic"] is False
    assert [t["name"] for t in m["tasks"]] == ["T1", "T2", "T3"]
    assert m["summary"]["dropped_empty_query"] == 1
    assert m["summary"]["tasks"]["T2"]["skipped_unknown_user_rows"] == 1
    # user u3 has 5 + 0 = 5 queries: t = 0..4 -> '검색어 3', '검색어 4', '검색어 5', '검색어 6', '검색어 0'
    u3 = ds.user_ids.index("u3")
    row = ds.sequences[u3]
    assert row[0] == 0  # left-padded
    assert [ds.vocab.queries[i] for i in row[1:]] == [
        "검색어 3",
        "검색어 4",
        "검색어 5",
        "검색어 6",
        "검색어 0",
    ]
    # u2 has 7 queries, only the last 6 are kept, most recent last
    u2 = ds.user_ids.index("u2")
    assert [ds.vocab.queries[i] for i in ds.sequences[u2]] == [f"검색어 {(2 + t) % 7}" for t in range(1, 7)]
    t1 = ds.task("T1")
    assert np.array_equal(t1.label, ds.sequences[t1.user_index, -1])
    t2 = ds.task("T2")
    assert t2.n_labels == 4 and t2.label_names == ["cat0", "cat1", "cat2", "cat3"]
    assert len(t2.user_index) == sum(1 + u % 2 for u in range(40))
    t3 = ds.task("T3")
    assert sorted(t3.label_names) == ["F", "M"] and t3.metric == "accuracy"
    # user-level split: every task inherits the user's split code
    for t in ds.tasks:
        assert np.array_equal(t.split, ds.user_split[t.user_index])
    assert ds.interactions is not None and ds.interactions.n_items == 9
    ts = ds.interactions.timestamp
    for u in np.unique(ds.interactions.user_index):
        assert np.all(np.diff(ts[ds.interactions.user_index == u]) >= 0)


def test_example_split_parity_mode(tmp_path):
    f = write_files(tmp_path, n_users=60)
    prepare_files(tmp_path / "ds", **f, opts=BuildOptions(seq_len=6, split="example"))
    t2 = load_dataset(tmp_path / "ds").task("T2")
    n = len(t2.user_index)
    n_eval = int(np.floor(0.2 * n))
    n_test = int(np.floor(0.75 * n_eval))
    assert t2.split_counts() == {"train": n - n_eval, "valid": n_eval - n_test, "test": n_test}


def _digest(d: Path) -> dict[str, str]:
    # config.toml records the options themselves (chunk_rows differs on purpose below)
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.name != "config.toml"
    }


def test_same_input_same_bytes(tmp_path):
    f = write_files(tmp_path)
    prepare_files(tmp_path / "a", **f, opts=BuildOptions(seq_len=6))
    prepare_files(tmp_path / "b", **f, opts=BuildOptions(seq_len=6, chunk_rows=7))  # chunking must not matter
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_min_count_maps_rare_queries_to_unk(tmp_path):
    f = write_files(tmp_path)
    pd.DataFrame(
        [("u0", 1, "흔한"), ("u0", 2, "흔한"), ("u0", 3, "드문"), ("u1", 1, "흔한"), ("u1", 2, "흔한")],
        columns=["user_id", "timestamp", "query"],
    ).to_csv(f["queries"], index=False)
    (tmp_path / "tasks.toml").write_text('[[task]]\nname = "T1"\nkind = "next_query"\n')
    m = prepare_files(
        tmp_path / "ds", queries=f["queries"], tasks=f["tasks"], opts=BuildOptions(seq_len=4, min_count=2)
    )
    ds = load_dataset(tmp_path / "ds")
    assert ds.vocab.queries == ["<pad>", "<unk>", "흔한"] and m["summary"]["rows_mapped_to_unk"] == 1
    assert list(ds.sequences[ds.user_ids.index("u0")]) == [0, 2, 2, 1]


# ---- bad input: one line naming the file, the row and the fix ----


def _expect(tmp_path, f, match, **kw):
    with pytest.raises(QuerylearnError, match=match) as exc:
        prepare_files(tmp_path / "ds", **f, opts=BuildOptions(seq_len=6), **kw)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_bad_inputs(tmp_path):
    f = write_files(tmp_path)
    log = f["queries"]
    good = log.read_bytes()

    log.write_bytes(b"")
    assert "log.csv: the file is empty" in _expect(tmp_path, f, "empty")

    log.write_text("user_id,timestamp,query\n", encoding="utf-8")
    _expect(tmp_path, f, "no data rows")

    log.write_text("user,timestamp,query\nu1,1,a\n", encoding="utf-8")
    msg = _expect(tmp_path, f, "missing column 'user_id'")
    assert "row 1" in msg and "fix:" in msg

    log.write_text("user_id,timestamp,query\nu1,1,a\nu1,2,b,extra\n", encoding="utf-8")
    msg = _expect(tmp_path, f, "malformed CSV row")
    assert "row 3" in msg

    log.write_text("user_id,timestamp,query\nu1,1,a\nu1,yesterday,b\n", encoding="utf-8")
    msg = _expect(tmp_path, f, "timestamp 'yesterday'")
    assert "row 3" in msg

    log.write_bytes("user_id,timestamp,query\nu1,1,캠핑\n".encode() + b"u1,2,\xff\xfe\n")
    msg = _expect(tmp_path, f, "not valid UTF-8")
    assert "row 3" in msg

    log.write_text("user_id,timestamp,query\nu1,1,a\n,2,b\n", encoding="utf-8")
    assert "row 3" in _expect(tmp_path, f, "empty value in column 'user_id'")

    log.write_bytes(good)
    (tmp_path / "gender.csv").write_text("user_id,label\nu0,F\nu1,M\nu2,M\nu2,F\n", encoding="utf-8")
    assert "row 5" in _expect(tmp_path, f, "more than one label")

    (tmp_path / "gender.csv").write_text("user_id,label\nu0,F\nu1,M\nu2,M\nu4,F\nu3,X\n", encoding="utf-8")
    msg = _expect(tmp_path, f, "class 'X' occurs only once")
    assert "row 6" in msg and "--min-label-count 2" in msg

    (tmp_path / "gender.csv").write_text("user_id,label\nnobody,F\nnobody2,M\n", encoding="utf-8")
    _expect(tmp_path, f, "has no users left")


def test_rare_class_dropped_and_counted_with_min_label_count(tmp_path):
    f = write_files(tmp_path)
    (tmp_path / "gender.csv").write_text("user_id,label\nu0,F\nu1,M\nu2,M\nu3,X\nu4,F\n", encoding="utf-8")
    m = prepare_files(tmp_path / "ds", **f, opts=BuildOptions(seq_len=6, min_label_count=2))
    assert m["summary"]["tasks"]["T3"]["skipped_rare_label_rows"] == 1
    assert load_dataset(tmp_path / "ds").task("T3").label_names == ["F", "M"]


def test_parquet_log_equals_csv_log(tmp_path):
    f = write_files(tmp_path)
    pd.read_csv(f["queries"], dtype=str, keep_default_na=False).to_parquet(tmp_path / "log.parquet")
    prepare_files(tmp_path / "a", **f, opts=BuildOptions(seq_len=6))
    prepare_files(tmp_path / "b", **{**f, "queries": tmp_path / "log.parquet"}, opts=BuildOptions(seq_len=6))
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert np.array_equal(a.sequences, b.sequences) and a.vocab.queries == b.vocab.queries


def test_bad_tasks_toml(tmp_path):
    f = write_files(tmp_path)
    f["tasks"].write_text('[[task]]\nname = "T1"\nkind = "next_query"\ncolour = "red"\n')
    _expect(tmp_path, f, "unknown key 'colour'")
    f["tasks"].write_text('[[task]]\nname = "T2"\nkind = "ranking"\nlabels = "wish.csv"\n')
    _expect(tmp_path, f, "kind 'ranking' is not one of")


def test_cli_prepare_prints_summary_and_one_line_errors(tmp_path, capsys):
    f = write_files(tmp_path)
    with pytest.raises(SystemExit) as ok:
        main(
            [
                "prepare",
                "files",
                "--queries",
                str(f["queries"]),
                "--tasks",
                str(f["tasks"]),
                "--interactions",
                str(f["interactions"]),
                "--out",
                str(tmp_path / "ds"),
                "--seq-len",
                "6",
            ]
        )
    assert ok.value.code == 0
    out = capsys.readouterr().out
    assert "T2" in out and "multi_target" in out.replace("…", "") or "multi" in out
    f["queries"].write_bytes(b"")
    with pytest.raises(SystemExit) as bad:
        main(
            [
                "prepare",
                "files",
                "--queries",
                str(f["queries"]),
                "--tasks",
                str(f["tasks"]),
                "--out",
                str(tmp_path / "x"),
            ]
        )
    assert bad.value.code == 1
    err = capsys.readouterr().err
    assert "log.csv: the file is empty" in err and "Traceback" not in err
    assert isinstance(DataError("p", "m"), QuerylearnError)


def test_interactions_streamed_in_chunks_keep_order_ties_and_item_numbering(tmp_path):
    """Interactions are reduced chunk by chunk: equal times keep file order across chunk borders, items
    are numbered in natural order whatever chunk they first appear in, unknown users are counted."""
    f = write_files(tmp_path, n_users=4)
    rows = [("u1", "item9", 50), ("u0", "item10", 40), ("nobody", "item7", 1), ("u1", "item2", 50),
            ("u0", "item9", 30), ("u1", "item10", 50), ("u0", "item2", 40)]
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(f["interactions"], index=False)
    for chunk_rows in (2, 3, 1000):
        opts = BuildOptions(seq_len=6, chunk_rows=chunk_rows)
        m = prepare_files(tmp_path / f"c{chunk_rows}", **f, opts=opts)
        assert m["summary"]["interactions"] == {"rows": 7, "skipped_unknown_user_rows": 1,
                                                "items_without_text": 3}
    inter = load_dataset(tmp_path / "c2").interactions
    assert inter.item_ids == ["item10", "item2", "item9"]  # code-point order (not all integers)
    u0, u1 = (load_dataset(tmp_path / "c2").user_ids.index(u) for u in ("u0", "u1"))
    got = [(int(u), inter.item_ids[i], int(t)) for u, i, t in
           zip(inter.user_index, inter.item_index, inter.timestamp, strict=True)]
    # u0 by time (40, 40 tie: file order item10 then item2), u1's three rows at 50 in file order
    assert got == [(u0, "item9", 30), (u0, "item10", 40), (u0, "item2", 40),
                   (u1, "item9", 50), (u1, "item2", 50), (u1, "item10", 50)]
    assert _digest(tmp_path / "c2") == _digest(tmp_path / "c3") == _digest(tmp_path / "c1000")
