"""prepare out of core: partitioned folders and globs, and the duckdb engine equal to the pandas one."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import golden_cases
import pandas as pd
import pytest
from test_prepare_files import write_files

from querylearn.cli.main import main
from querylearn.data.build import BuildOptions
from querylearn.data.outofcore import choose_engine, expand_inputs
from querylearn.data.sources import prepare_files
from querylearn.errors import DataError, QuerylearnError


def _files(d: Path) -> dict[str, bytes]:
    """Every output file's bytes; dataset.json without the input paths (they name different files)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "dataset.json":
                meta = json.loads(data)
                meta.get("inputs", {}).pop("queries", None)
                data = json.dumps(meta, sort_keys=True).encode()
            out[str(p.relative_to(d))] = data
    return out


def _tricky_log(d: Path) -> Path:
    """Ties in time (file order decides), mixed epoch/ISO/fraction timestamps, NFC and NFD spellings,
    an empty query, rare queries for --min-count."""
    rows = []
    for u in range(30):
        for t in range(4 + u % 4):
            q = f"검색어 {(u * 3 + t) % 9}"
            if t % 3 == 1:
                q = unicodedata.normalize("NFD", q)  # same query after querylearn.nfc-v1
            ts = [str(1000 + 10 * (t // 2)), f"{1000 + 10 * (t // 2)}.5", "1970-01-01T00:16:50+00:00"][t % 3]
            rows.append((str(u), ts, q))
    rows += [("3", "900", "   "), ("7", "2000", "드문 검색어"), ("12", "2000", "ＡＢＣ")]
    path = d / "tricky.csv"
    pd.DataFrame(rows, columns=["user_id", "timestamp", "query"]).to_csv(path, index=False)
    return path


def _split_to_parquet_folder(csv: Path, folder: Path, parts: int) -> None:
    """The CSV's rows in ``parts`` consecutive Hive-style partitions (string columns, as a CSV reads)."""
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False)
    size = -(-len(rows) // parts)
    for k in range(parts):
        (folder / f"part={k:02d}").mkdir(parents=True)
        part = folder / f"part={k:02d}" / "data.parquet"
        rows.iloc[k * size : (k + 1) * size].to_parquet(part, index=False)
    (folder / "_SUCCESS").write_text("")


def test_partitioned_parquet_folder_equals_one_csv(tmp_path):
    f = write_files(tmp_path)
    _split_to_parquet_folder(f["queries"], tmp_path / "log", parts=4)
    prepare_files(tmp_path / "one", **f, opts=BuildOptions(seq_len=6))
    for engine in ("pandas", "duckdb"):
        prepare_files(tmp_path / engine, **{**f, "queries": tmp_path / "log"}, opts=BuildOptions(seq_len=6),
                      engine=engine)
        assert _files(tmp_path / engine) == _files(tmp_path / "one"), engine


@pytest.mark.parametrize("over", [{}, {"min_count": 2, "seq_len": 3}, {"exclude_last_interaction": True}])
def test_duckdb_engine_writes_the_same_bytes(tmp_path, over):
    f = write_files(tmp_path)
    f["queries"] = _tricky_log(tmp_path)
    f["tasks"].write_text('[[task]]\nname = "T1"\nkind = "next_query"\n', encoding="utf-8")
    inter = pd.DataFrame([(str(u), f"i{u % 5}", 1000 + 10 * (u % 3)) for u in range(30)],
                         columns=["user_id", "item_id", "timestamp"])
    inter.to_csv(f["interactions"], index=False)
    opts = BuildOptions(**{"seq_len": 5, **over})
    m_pd = prepare_files(tmp_path / "pd", **f, opts=opts, engine="pandas")
    m_db = prepare_files(tmp_path / "db", **f, opts=opts, engine="duckdb", memory_limit="64MB")
    assert m_db == m_pd
    assert m_pd["summary"]["dropped_empty_query"] == 1
    assert _files(tmp_path / "db") == _files(tmp_path / "pd")
    # and --users keeps the same first users in both engines
    prepare_files(tmp_path / "pd5", **f, opts=opts, engine="pandas", users=5)
    prepare_files(tmp_path / "db5", **f, opts=opts, engine="duckdb", users=5)
    assert _files(tmp_path / "db5") == _files(tmp_path / "pd5")


def test_duckdb_engine_matches_the_golden_files_case(tmp_path):
    (tmp_path / "log.csv").write_text(golden_cases.FILES_LOG, encoding="utf-8")
    (tmp_path / "tasks.toml").write_text(golden_cases.FILES_TASKS, encoding="utf-8")
    golden_cases._cli(["prepare", "files", "--queries", str(tmp_path / "log.csv"), "--tasks",
                       str(tmp_path / "tasks.toml"), "--seq-len", "3", "--engine", "duckdb",
                       "--out", str(tmp_path / "files")])
    want = json.loads(golden_cases.GOLDEN.read_text(encoding="utf-8"))["prepare"]["files"]
    got = golden_cases._dir_hashes(tmp_path / "files", tmp_path)
    assert {f: got.get(f) for f in want} == want  # every recorded file (newer ones, e.g. config.toml, aside)


@pytest.mark.parametrize("engine", ["pandas", "duckdb"])
def test_bad_row_in_a_later_part_names_that_file_and_row(tmp_path, engine):
    f = write_files(tmp_path)
    _split_to_parquet_folder(f["queries"], tmp_path / "log", parts=3)
    bad = tmp_path / "log" / "part=01" / "data.parquet"
    rows = pd.read_parquet(bad)
    rows.loc[4, "timestamp"] = "yesterday"
    rows.to_parquet(bad, index=False)
    with pytest.raises(DataError) as e:
        prepare_files(tmp_path / "ds", **{**f, "queries": tmp_path / "log"}, opts=BuildOptions(seq_len=6),
                      engine=engine)
    want = f"{bad}, row 5: timestamp 'yesterday' is neither a number nor an ISO-8601 date"
    assert str(e.value).startswith(want)


def test_expand_inputs_globs_and_errors(tmp_path):
    for name in ("b.csv", "a.csv", "c.txt"):
        (tmp_path / name).write_text("x")
    assert expand_inputs(str(tmp_path / "*.csv")) == [tmp_path / "a.csv", tmp_path / "b.csv"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .parquet"):
        expand_inputs(tmp_path / "empty")
    with pytest.raises(DataError, match="no file matches"):
        expand_inputs(str(tmp_path / "*.parquet"))
    assert expand_inputs(tmp_path / "missing.csv") == [tmp_path / "missing.csv"]


def test_engine_choice_and_memory_limit_errors(tmp_path, capsys, monkeypatch):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where the DuckDB folder would go
    small = [tmp_path / "a.csv"]
    small[0].write_text("x")
    assert choose_engine("auto", small, None) == "pandas"
    assert choose_engine("auto", small, "1GB") == "duckdb"
    with pytest.raises(QuerylearnError, match="--memory-limit bounds the duckdb engine"):
        choose_engine("pandas", small, "1GB")
    with pytest.raises(QuerylearnError, match="--engine 'spark'"):
        choose_engine("spark", small, None)
    f = write_files(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["prepare", "files", "--queries", str(f["queries"]), "--tasks", str(f["tasks"]),
              "--memory-limit", "lots", "--out", str(tmp_path / "ds")])
    assert e.value.code == 1
    assert "--memory-limit 'lots' is not a size" in capsys.readouterr().err
    assert not list((tmp_path / "tmp").iterdir())  # refused before any temporary database was created
