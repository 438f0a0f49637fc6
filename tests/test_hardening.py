"""Issue 18, "no silent corruption": timestamps, files-source options, verified checkpoints,
dataset fingerprints on resume, one-line errors for the former tracebacks, the CLI guard."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from toy import make_toy_dataset  # tests/toy.py

from querylearn.cli import main as cli_main
from querylearn.cli.main import EXIT_BUG, main
from querylearn.config import load_config
from querylearn.continual.checkpoint import load_checkpoint
from querylearn.continual.config import TrainConfig
from querylearn.continual.run import train_sequence
from querylearn.data.build import BuildOptions
from querylearn.data.dataset import load_dataset
from querylearn.data.readers import NS_PER_S, parse_timestamps
from querylearn.data.sources import prepare, prepare_files
from querylearn.data.tasks import load_task_sequence
from querylearn.errors import ArtifactError, ConfigError, DataError, QuerylearnError

T1_ONLY = '[[task]]\nname = "T1"\nkind = "next_query"\n'
TINY = {
    "model.channels": 16,
    "model.dilations": [1, 2],
    "threads": 1,
    "t1.max_epochs": 1,
    "t2.max_epochs": 1,
    "later.max_epochs": 1,
    "t2.batch_size": 64,
    "later.batch_size": 64,
}


def _ts(*values: str) -> np.ndarray:
    s = pd.Series(list(values), dtype=object)
    return parse_timestamps("log.csv", s, pd.Series(range(2, 2 + len(values))))


def _seqs(out: Path) -> dict[str, list[str]]:
    ds = load_dataset(out)
    return {
        u: [ds.vocab.queries[i] for i in row if i] for u, row in zip(ds.user_ids, ds.sequences, strict=True)
    }


def _files(tmp_path: Path, log: str, tasks: str = T1_ONLY) -> dict[str, Path]:
    (tmp_path / "q.csv").write_text(log, encoding="utf-8")
    (tmp_path / "t.toml").write_text(tasks, encoding="utf-8")
    return {"queries": tmp_path / "q.csv", "tasks": tmp_path / "t.toml"}


# ---- 1, 2: timestamps ------------------------------------------------------------------------


def test_timestamps_known_values():
    ns = _ts(
        "1714564800",
        "2024-05-01T12:00:00",
        "2024-05-01T21:00:00+09:00",
        "2024-05-01T12:00:00Z",
        "2024-05-01 12:00:00.5",
        "100.7",
        "100.2",
        "-0.5",
        "1.5e2",
        "2024-05-01",
    )
    assert ns.tolist() == [
        1714564800 * NS_PER_S,
        1714564800 * NS_PER_S,
        1714564800 * NS_PER_S,
        1714564800 * NS_PER_S,
        1714564800 * NS_PER_S + NS_PER_S // 2,
        100_700_000_000,
        100_200_000_000,
        -500_000_000,
        150 * NS_PER_S,
        1714521600 * NS_PER_S,
    ]


@pytest.mark.parametrize(
    "bad, words",
    [
        ("inf", "not a finite number"),
        ("-inf", "not a finite number"),
        ("nan", "not a finite number"),
        ("1e30", "out of range"),
        ("1714564800000", "milliseconds"),
        ("99999999999999999999999", "out of range"),
        ("1714564800000.5", "out of range"),
        ("yesterday", "neither a number nor an ISO-8601"),
        ("2024-13-01", "neither a number nor an ISO-8601"),
        ("9999-01-01", "outside 1677..2262"),
    ],
)
def test_bad_timestamps_name_the_row(bad, words):
    with pytest.raises(DataError, match=rf"log\.csv, row 3: timestamp '{bad}' .*{words}"):
        _ts("100", bad, "200")


def test_issue_repro_iso_and_mixed_order(tmp_path):
    f = _files(
        tmp_path,
        "user_id,timestamp,query\n1,2024-05-01T12:00:00,first\n1,2024-05-01T12:10:00,third\n"
        "1,2024-05-01T12:05:00,second\n2,1714564800,a\n2,1714564900,b\n2,2024-05-02T00:00:00,c\n",
    )
    prepare_files(tmp_path / "d", **f, opts=BuildOptions(seq_len=5))
    assert _seqs(tmp_path / "d") == {"1": ["first", "second", "third"], "2": ["a", "b", "c"]}


def test_time_zones_and_fractions_order(tmp_path):
    f = _files(
        tmp_path,
        "user_id,timestamp,query\n3,2024-05-01T04:00:00Z,utc4\n3,2024-05-01T12:00:00+09:00,kst12\n"
        "3,2024-05-01 05:00:00,naive5\n4,100.7,late\n4,100.2,early\n4,100,earliest\n",
    )
    prepare_files(tmp_path / "d", **f, opts=BuildOptions(seq_len=5))
    assert _seqs(tmp_path / "d") == {"3": ["kst12", "utc4", "naive5"], "4": ["earliest", "early", "late"]}


@pytest.mark.parametrize("tz", [None, "Asia/Seoul"])
def test_parquet_native_timestamps(tmp_path, tz):
    stamps = pd.to_datetime(
        ["2024-05-01 12:00", "2024-05-01 12:10", "2024-05-01 12:05:00.25"], format="ISO8601"
    )
    if tz:
        stamps = stamps.tz_localize(tz)
    pd.DataFrame({"user_id": [1, 1, 1], "timestamp": stamps, "query": ["a", "c", "b"]}).to_parquet(
        tmp_path / "q.parquet"
    )
    (tmp_path / "t.toml").write_text(T1_ONLY)
    prepare_files(
        tmp_path / "d",
        queries=tmp_path / "q.parquet",
        tasks=tmp_path / "t.toml",
        opts=BuildOptions(seq_len=5),
    )
    assert _seqs(tmp_path / "d") == {"1": ["a", "b", "c"]}


def test_interaction_timestamps_iso_and_fractions(tmp_path):
    f = _files(tmp_path, "user_id,timestamp,query\n1,100,a\n1,200,b\n")
    (tmp_path / "i.csv").write_text(
        "user_id,item_id,timestamp\n1,X,2024-05-01T12:10:00\n1,Y,2024-05-01T12:00:00\n"
        "1,Z,1714565100\n1,W,1714565100.5\n1,V,1714565100.25\n"
    )
    prepare_files(tmp_path / "d", **f, interactions=tmp_path / "i.csv", opts=BuildOptions(seq_len=5))
    ds = load_dataset(tmp_path / "d")
    inter = ds.interactions
    assert [inter.item_ids[i] for i in inter.item_index] == ["Y", "Z", "V", "W", "X"]
    assert inter.timestamp.tolist() == [1714564800, 1714565100, 1714565100, 1714565100, 1714565400]


def test_integer_epoch_outputs_unchanged(tmp_path):
    """Integer epoch seconds keep their exact values in interactions.npz (golden fixtures use them)."""
    f = _files(tmp_path, "user_id,timestamp,query\n1,5,a\n1,3,b\n")
    (tmp_path / "i.csv").write_text("user_id,item_id,timestamp\n1,X,7\n1,Y,-2\n")
    prepare_files(tmp_path / "d", **f, interactions=tmp_path / "i.csv", opts=BuildOptions(seq_len=5))
    ds = load_dataset(tmp_path / "d")
    assert ds.interactions.timestamp.tolist() == [-2, 7] and _seqs(tmp_path / "d") == {"1": ["b", "a"]}


# ---- 3: files --users / --exclude-last-interaction ------------------------------------------

LOG3 = "user_id,timestamp,query\n1,10,a\n1,20,b\n1,30,X\n1,31,after\n2,10,a\n2,20,c\n2,25,Y\n10,5,a\n10,6,b\n"
INTER3 = "user_id,item_id,timestamp\n1,X,30\n1,P,5\n2,Q,3\n2,Y,25\n10,Z,1\n"
TASKS3 = T1_ONLY + '[[task]]\nname = "T2"\nkind = "multi_target"\nlabels = "wish.csv"\n'


def test_files_exclude_last_interaction(tmp_path):
    f = _files(tmp_path, LOG3, TASKS3)
    (tmp_path / "i.csv").write_text(INTER3)
    (tmp_path / "wish.csv").write_text("user_id,label\n1,X\n1,P\n2,Y\n2,P\n10,P\n10,Z\n")
    plain = prepare_files(tmp_path / "d0", **f, interactions=tmp_path / "i.csv", opts=BuildOptions(seq_len=5))
    m = prepare_files(
        tmp_path / "d1",
        **f,
        interactions=tmp_path / "i.csv",
        opts=BuildOptions(seq_len=5, exclude_last_interaction=True),
    )
    assert _seqs(tmp_path / "d0")["1"] == ["a", "b", "x", "after"]
    # user 10's held-out interaction (t=1) precedes all its queries: its whole history goes
    assert _seqs(tmp_path / "d1") == {"1": ["a", "b"], "2": ["a", "c"]}
    assert m["excluded_last_interaction_rows"] == 5 and m["excluded_last_interaction_label_rows"] == 3
    assert m["summary"]["log_rows"] == plain["summary"]["log_rows"] == 9
    ds = load_dataset(tmp_path / "d1")
    t2 = ds.task("T2")
    names = [
        ds.user_ids[u] + ":" + t2.label_names[lab] for u, lab in zip(t2.user_index, t2.label, strict=True)
    ]
    assert sorted(names) == ["1:P", "2:P"]
    # the interactions keep the held-out items X and Y; user 10 has no query left, so no row at all
    assert ds.interactions.item_ids == ["P", "Q", "X", "Y"] and ds.user_ids == ["1", "2"]
    with pytest.raises(DataError, match="--exclude-last-interaction needs --interactions"):
        prepare_files(tmp_path / "d2", **f, opts=BuildOptions(seq_len=5, exclude_last_interaction=True))


def test_files_users_keeps_first_n_in_natural_order(tmp_path):
    f = _files(tmp_path, LOG3)
    m = prepare_files(tmp_path / "d", **f, opts=BuildOptions(seq_len=5), users=2)
    assert list(_seqs(tmp_path / "d")) == ["1", "2"] and m["users_limit"]["skipped_log_rows"] == 2
    with pytest.raises(DataError, match="--users 0 must be at least 1"):
        prepare_files(tmp_path / "e", **f, opts=BuildOptions(seq_len=5), users=0)
    with pytest.raises(DataError, match="--users applies to synthetic and files"):
        prepare("kmrd", tmp_path / "k", BuildOptions(), users=5, path=tmp_path)


def test_cli_files_flags_are_not_ignored(tmp_path, capsys):
    f = _files(tmp_path, LOG3)
    (tmp_path / "i.csv").write_text(INTER3)
    base = [
        "prepare",
        "files",
        "--queries",
        str(f["queries"]),
        "--tasks",
        str(f["tasks"]),
        "--interactions",
        str(tmp_path / "i.csv"),
        "--seq-len",
        "5",
    ]
    for name, extra in (("a", []), ("b", ["--exclude-last-interaction"]), ("c", ["--users", "1"])):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--out", str(tmp_path / name), *extra])
        assert exc.value.code == 0
    a, b, c = (_seqs(tmp_path / n) for n in "abc")
    assert a != b and b["1"] == ["a", "b"] and list(c) == ["1"]


# ---- tasks TOML -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "toml, words",
    [
        ('[[task]]\nname = 7\nkind = "next_query"\n', r"name = 7 must be a quoted string"),
        (
            T1_ONLY + '[[task]]\nname = "T2"\nkind = "classify"\nlabels = 5\n',
            r"labels = 5 must be a quoted string",
        ),
        ('[task]\nname = "T1"\nkind = "next_query"\n', r"\[task\] is a single table; write \[\[task\]\]"),
        ('[[task]]\nname = "T1"\nkind = "nextquery"\n', r"kind 'nextquery' is not one of"),
        ("task = 3\n", r"'task' must be a list of \[\[task\]\] tables"),
    ],
)
def test_bad_tasks_toml_names_the_file(tmp_path, toml, words):
    (tmp_path / "t.toml").write_text(toml)
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 't.toml'}: .*{words}"):
        load_task_sequence(tmp_path / "t.toml")


# ---- 4: checkpoints ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run")
    make_toy_dataset(root / "toy")
    cfg = load_config(TrainConfig, None, {**TINY, "strategy": "finetune", "tasks": ["T1"]})
    train_sequence(root / "toy", root / "run", config=cfg)
    return root / "run"


def _ckpt(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("*.json"))[-1]


def test_checkpoint_records_and_verifies_the_tensor_hash(tiny_run, tmp_path):
    meta = json.loads(_ckpt(tiny_run).read_text())
    assert len(meta["tensors_sha256"]) == 64
    load_checkpoint(_ckpt(tiny_run))
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    st = _ckpt(run).with_suffix(".safetensors")
    raw = bytearray(st.read_bytes())
    raw[-40:-8] = np.full(8, np.nan, dtype=np.float32).tobytes()
    st.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="tensor file changed after it was written"):
        load_checkpoint(_ckpt(run))
    # an old checkpoint without the hash still loads, but NaN weights are refused
    old = json.loads(_ckpt(run).read_text())
    del old["tensors_sha256"]
    _ckpt(run).write_text(json.dumps(old))
    with pytest.raises(ArtifactError, match="holds NaN or infinite values"):
        load_checkpoint(_ckpt(run))
    st.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_checkpoint(_ckpt(run))


def test_old_checkpoint_without_hash_loads(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    old = json.loads(_ckpt(run).read_text())
    del old["tensors_sha256"]
    _ckpt(run).write_text(json.dumps(old))
    model, meta, _ = load_checkpoint(_ckpt(run))
    assert "tensors_sha256" not in meta and model.task_names == ["T1"]


@pytest.mark.parametrize("command", ["export-users", "coldstart-eval"])
def test_truncated_checkpoint_is_one_line(tiny_run, tmp_path, capsys, command):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    st = _ckpt(run).with_suffix(".safetensors")
    st.write_bytes(st.read_bytes()[:100])
    argv = (
        ["export-users", "--run", str(run), "--out", str(tmp_path / "u.parquet")]
        if command == "export-users"
        else [
            "coldstart-eval",
            "--data",
            str(tiny_run.parent / "toy"),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "cs"),
            "--epochs",
            "1",
            "--negatives",
            "5",
        ]
    )
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "Traceback" not in err and str(st) in " ".join(err.split())


# ---- dataset fingerprint on --resume ----------------------------------------------------------


def test_resume_refuses_a_re_prepared_dataset(tmp_path):
    make_toy_dataset(tmp_path / "toy")
    cfg = load_config(TrainConfig, None, {**TINY, "strategy": "finetune", "tasks": ["T1"]})
    train_sequence(tmp_path / "toy", tmp_path / "run", config=cfg)
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["data_fingerprint"]
    assert set(recorded) >= {"vocab.json", "users.json", "sequences.npy", "splits.npy", "tasks/T1.npz"}
    shutil.rmtree(tmp_path / "toy")
    make_toy_dataset(tmp_path / "toy", n_queries=12, seed=1)
    with pytest.raises(ArtifactError, match=r"vocab\.json: the dataset changed since run .* was trained"):
        train_sequence(resume=tmp_path / "run", add_task="T2")
    shutil.rmtree(tmp_path / "toy")
    make_toy_dataset(tmp_path / "toy")  # re-prepared identically: the run continues
    grown = train_sequence(resume=tmp_path / "run", add_task="T2")
    assert grown["tasks"] == ["T1", "T2"]


# ---- output paths, chunk size -----------------------------------------------------------------


def test_out_paths_that_are_files(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    make_toy_dataset(tmp_path / "toy")
    cases = [
        (["prepare", "synthetic", "--users", "100", "--out", str(tmp_path / "f")], "is a file, not a folder"),
        (["prepare", "synthetic", "--users", "100", "--out", str(tmp_path / "f" / "sub")], "which is a file"),
        (["train-sequence", "--data", str(tmp_path / "toy"), "--out", str(tmp_path / "f")], "is a file"),
        (
            ["train-sequence", "--data", str(tmp_path / "toy"), "--out", str(tmp_path / "f" / "s")],
            "which is a file",
        ),
        (
            ["prepare", "synthetic", "--users", "100", "--out", str(tmp_path / "d"), "--chunk-rows", "0"],
            "chunk_rows: must be at least 1, got 0",
        ),  # config errors name the key (docs/config.md)
    ]
    for argv, words in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 1 and words in " ".join(err.split()) and "Traceback" not in err, argv


# ---- embed-queries: a relative --model recorded at embed-init time ----------------------------


def test_embed_queries_uses_the_recorded_model_folder(tmp_path, monkeypatch):
    from kobert_tiny import build_tiny_hf_bert

    from querylearn.embeddings import embed_init, embed_queries, resolve_config

    build_tiny_hf_bert(tmp_path / "a" / "m")
    make_toy_dataset(tmp_path / "a" / "toy")
    monkeypatch.chdir(tmp_path / "a")
    embed_init("toy", "emb", resolve_config(source="hf", model="./m"))
    monkeypatch.chdir(tmp_path)
    out = embed_queries(tmp_path / "a" / "emb", ["검색어1"])
    assert out.vectors.shape[0] == 1 and np.isfinite(out.vectors).all()


# ---- the guard ----------------------------------------------------------------------------------


def test_unexpected_exception_is_one_line_with_a_crash_log(tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("synthetic bug\nsecond line")

    monkeypatch.setenv("QUERYLEARN_CRASH_DIR", str(tmp_path / "crash"))
    monkeypatch.setattr(cli_main, "app", boom)
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "synthetic"])
    err = capsys.readouterr().err
    assert exc.value.code == EXIT_BUG == 70
    assert len(err.strip().splitlines()) == 1 or "Traceback" not in err
    assert "internal error" in err and "a bug in querylearn" in err and "Traceback" not in err
    logs = list((tmp_path / "crash").glob("querylearn-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in " ".join(err.split())
    text = logs[0].read_text()
    assert "Traceback" in text and "RuntimeError: synthetic bug" in text


def test_querylearn_error_with_brackets_prints_verbatim(capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise QuerylearnError("write [[task]] and [bold]x[/bold]")

    monkeypatch.setattr(cli_main, "app", fail)
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 1 and "write [[task]] and [bold]x[/bold]" in capsys.readouterr().err


def test_csv_line_endings(tmp_path):
    """CRLF files read like LF files; a bare \\r inside a value (pandas' to_csv leaves it unquoted)
    stays in the value instead of splitting the row (found by the property tests)."""
    (tmp_path / "t.toml").write_text(T1_ONLY)
    (tmp_path / "crlf.csv").write_bytes(b"user_id,timestamp,query\r\n1,2,b\r\n1,1,a\r\n")
    (tmp_path / "cr.csv").write_bytes(b"user_id,timestamp,query\n1,2,b\rx\n1,1,a\n")
    for name, want in (("crlf", ["a", "b"]), ("cr", ["a", "b x"])):
        prepare_files(
            tmp_path / name,
            queries=tmp_path / f"{name}.csv",
            tasks=tmp_path / "t.toml",
            opts=BuildOptions(seq_len=3),
        )
        assert _seqs(tmp_path / name) == {"1": want}


def test_kiwi_spacing_variants_segment_identically():
    """docs/embed-init.md and docs/data.md say --segment kiwi gives these two queries identical vectors."""
    from querylearn.embeddings.segment import segment_queries

    a, b = segment_queries(["캠핑의자 경량", "캠핑 의자 경량"])
    assert a == b
