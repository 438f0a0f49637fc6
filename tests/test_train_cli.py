"""CLI end to end: train-sequence writes metrics.json (lower-triangular R in [0, 1]) and R.csv;
bad input gives one line and exit code 1."""

import json

import pytest

from querylearn.cli.main import main
from querylearn.cli.train import parse_overrides
from querylearn.errors import ConfigError

FAST = [
    "--epochs",
    "1",
    "--model.channels",
    "16",
    "--model.dilations",
    "[1, 2]",
    "--t2.batch_size",
    "64",
    "--later.batch_size",
    "64",
    "--threads",
    "1",
    "--no-progress",
]




def _run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


def test_train_sequence_end_to_end(toy, tmp_path, capsys):
    out = tmp_path / "run"
    code, cap = _run(
        ["train-sequence", "--data", str(toy), "--out", str(out), "--seed", "3", "--with-single", *FAST],
        capsys,
    )
    assert code == 0, cap.err
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "teracon" and m["tasks"] == ["T1", "T2", "T3"] and m["seed"] == 3
    R = m["R"]
    assert len(R) == 3
    for i, row in enumerate(R):
        assert len(row) == 3
        for j, v in enumerate(row):
            assert (v is None) if j > i else (0.0 <= v <= 1.0)
    assert m["fwt"]["per_task"][0] is None and m["fwt"]["mean"] is not None
    assert m["bwt"]["per_task"][2] is None and m["bwt"]["mean"] is not None
    assert len(m["seconds_per_epoch"]) == 3
    assert (out / "R.csv").is_file() and (out / "config.toml").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "01-T1.json",
        "01-T1.safetensors",
        "02-T2.json",
        "02-T2.safetensors",
        "03-T3.json",
        "03-T3.safetensors",
    ]
    assert "R matrix" in cap.out
    cfg = (out / "config.toml").read_text()
    assert "seed = 3" in cfg and "channels = 16" in cfg and 'tasks = ["T1", "T2", "T3"]' in cfg


def test_strategy_and_tasks_flags(toy, tmp_path, capsys):
    out = tmp_path / "ft"
    code, cap = _run(
        [
            "train-sequence",
            "--data",
            str(toy),
            "--out",
            str(out),
            "--strategy",
            "finetune",
            "--tasks",
            "T1,T3",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, cap.err
    m = json.loads((out / "metrics.json").read_text())
    assert m["strategy"] == "finetune" and m["tasks"] == ["T1", "T3"] and m["metric"] == ["mrr@5", "accuracy"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model.chanels", "8"], "unknown config key 'model.chanels'"),
        (["--set", "strategy=ewc"], "unknown strategy 'ewc'"),  # the flag itself is an enum (exit 2)
        (["--epochs", "x"], "--epochs"),
        (["--tasks", "T2,T1"], "must come first"),
        (["--device", "cuda:63"], "not available here"),
    ],
)
def test_bad_input_is_one_line(toy, tmp_path, capsys, extra, message):
    code, cap = _run(
        ["train-sequence", "--data", str(toy), "--out", str(tmp_path / "bad"), *FAST, *extra], capsys
    )
    assert code == 1
    assert message in cap.err and "Traceback" not in cap.err


def test_bad_config_file_key(toy, tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('strategy = "teracon"\n[teracon]\nalfa = 0.5\n')
    code, cap = _run(
        ["train-sequence", "--data", str(toy), "--out", str(tmp_path / "x"), "--config", str(cfg)], capsys
    )
    assert code == 1 and "unknown config key 'teracon.alfa'" in cap.err and "run.toml" in cap.err


def test_missing_dataset(tmp_path, capsys):
    code, cap = _run(
        ["train-sequence", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), *FAST], capsys
    )
    assert code == 1 and "dataset.json" in cap.err


def test_parse_overrides():
    assert parse_overrides(
        ["--model.channels", "64", "--teracon.teacher_s=smax", "--model.dilations", "[1,2]"]
    ) == {"model.channels": 64, "teracon.teacher_s": "smax", "model.dilations": [1, 2]}
    with pytest.raises(ConfigError):
        parse_overrides(["--model.channels"])
