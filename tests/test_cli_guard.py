"""Every command, fed a few broken inputs, answers with one line and exit 1 or 2 (usage): never a
traceback on stderr, never the guard's "internal error" (exit 70) either."""

from __future__ import annotations

import pytest

from querylearn.cli.app import app
from querylearn.cli.main import main


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    (d / "file").write_text("not a folder")
    (d / "empty.csv").write_text("")
    (d / "garbage.csv").write_bytes(b'\xff\xfe\x00garbage,\n"unclosed')
    (d / "garbage.toml").write_text("[[task]\nname = ")
    (d / "t.toml").write_text('[task]\nname = "T1"\nkind = "next_query"\n')
    (d / "emptydir").mkdir()
    (d / "fake_run").mkdir()
    (d / "fake_run" / "run.json").write_text("{not json")
    (d / "fake_ds").mkdir()
    (d / "fake_ds" / "dataset.json").write_text('{"kind": "dataset", "schema_version": 1}')
    (d / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    return d


def _cases(d):
    f, e, g = d / "file", d / "emptydir", d / "garbage.csv"
    return {
        "prepare": [
            ["prepare", "nope", "--out", str(d / "o1")],
            ["prepare", "synthetic", "--out", str(f)],
            ["prepare", "synthetic", "--out", str(f / "x")],
            ["prepare", "synthetic", "--users", "5", "--out", str(d / "o2")],
            [
                "prepare",
                "files",
                "--queries",
                str(g),
                "--tasks",
                str(d / "garbage.toml"),
                "--out",
                str(d / "o3"),
            ],
            [
                "prepare",
                "files",
                "--queries",
                str(d / "empty.csv"),
                "--tasks",
                str(d / "t.toml"),
                "--out",
                str(d / "o4"),
            ],
            ["prepare", "kmrd", "--path", str(e), "--out", str(d / "o5")],
            ["prepare", "movielens-100k", "--path", str(f), "--out", str(d / "o6")],
        ],
        "embed-init": [
            ["embed-init", "--data", str(e), "--source", "random", "--out", str(d / "e1")],
            ["embed-init", "--data", str(d / "fake_ds"), "--source", "random", "--out", str(d / "e2")],
            ["embed-init", "--data", str(e), "--source", "nope", "--out", str(d / "e3")],
        ],
        "embed-queries": [
            ["embed-queries", "--emb", str(e), "--queries", str(g), "--out", str(d / "q.npy")],
            ["embed-queries", "--emb", str(f), "--queries", str(f), "--out", str(d / "q.npy")],
        ],
        "train-sequence": [
            ["train-sequence", "--data", str(e), "--out", str(d / "r1")],
            ["train-sequence", "--data", str(d / "fake_ds"), "--out", str(d / "r2")],
            ["train-sequence", "--data", str(e), "--out", str(f)],
            ["train-sequence", "--resume", str(d / "fake_run")],
            ["train-sequence", "--resume", str(e)],
        ],
        "export-users": [
            ["export-users", "--run", str(e), "--out", str(d / "u.parquet")],
            ["export-users", "--run", str(d / "fake_run"), "--out", str(d / "u.parquet")],
            ["export-users", "--run", str(f), "--out", str(f / "u.parquet")],
        ],
        "coldstart-eval": [
            ["coldstart-eval", "--data", str(e), "--out", str(d / "c1")],
            [
                "coldstart-eval",
                "--data",
                str(d / "fake_ds"),
                "--run",
                str(d / "fake_run"),
                "--out",
                str(d / "c2"),
            ],
            ["coldstart-eval", "--data", str(e), "--users-from", str(g), "--out", str(d / "c3")],
        ],
        "report": [
            ["report", str(e)],
            ["report", str(f)],
            ["report", str(d / "fake_run")],
        ],
        "export-model": [
            ["export-model", "--run", str(e), "--out", str(d / "m1")],
            ["export-model", "--run", str(d / "fake_run"), "--out", str(d / "m2")],
            ["export-model", "--run", str(f), "--out", str(f / "m")],
        ],
        "embed-users": [
            ["embed-users", "--model", str(e), "--queries", str(g), "--out", str(d / "eu.parquet")],
            ["embed-users", "--model", str(f), "--queries", str(f), "--out", str(d / "eu.parquet")],
            ["embed-users", "--model", str(e), "--queries", str(g), "--out", str(d / "eu.csv")],
        ],
        "neighbours": [
            ["neighbours", "--emb", str(e), "--query", "x"],
            ["neighbours", "--emb", str(f), "--query", "x"],
            ["neighbours", "--users", str(g), "--user", "u"],
            ["neighbours", "--emb", str(e), "--users", str(g), "--query", "x"],
            ["neighbours", "--emb", str(e)],
        ],
        "demo": [
            ["demo", "--out", str(f)],
            ["demo", "--out", str(d / "dm"), "--preset", "nope"],
            ["demo", "--out", str(d / "dm2"), "--users", "3", "--preset", "tiny"],
        ],
    }


def test_every_command_has_broken_input_cases(broken):
    names = {c.name for c in app.registered_commands}
    assert names == set(_cases(broken)), names


@pytest.mark.parametrize(
    "command",
    [
        "prepare",
        "embed-init",
        "embed-queries",
        "train-sequence",
        "export-users",
        "coldstart-eval",
        "report",
        "demo",
        "export-model",
        "embed-users",
        "neighbours",
    ],
)
def test_broken_inputs_never_print_a_traceback(broken, capsys, command):
    for argv in _cases(broken)[command]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        out = capsys.readouterr()
        assert exc.value.code in (1, 2), (argv, exc.value.code, out.err)
        assert "Traceback" not in out.err and "internal error" not in out.err, (argv, out.err)
        assert out.err.strip(), argv
