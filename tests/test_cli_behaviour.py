"""The CLI behaves like the tools people know (issue 17): help text as written, -q/-v on every
command, choices validated with the list of valid values, JSONL records with timestamp/step/epoch,
optional experiment tracking."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import typer

from querylearn.cli.app import add_verbosity_options, app
from querylearn.cli.main import main


def _commands():
    add_verbosity_options()
    group = typer.main.get_command(app)
    return {name: group.get_command(None, name) for name in group.list_commands(None)}


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def _squash(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_keeps_bracketed_text_and_has_quiet_verbose(name, capsys):
    command = _commands()[name]
    code, out, _ = _run([name, "--help"], capsys)
    assert code == 0
    text = _squash(out)
    dense = "".join(out.split())  # the help wraps lines, also at hyphens
    for param in command.params:
        for bracketed in re.findall(r"\[+[^\[\]]+\]+", getattr(param, "help", None) or ""):
            assert "".join(bracketed.split()) in dense, f"{name}: {bracketed!r} lost from --help"
    assert "[]" not in dense
    assert "-q, --quiet" in text and "-v, --verbose" in text


def test_prepare_help_shows_the_source_tags(capsys):
    _, out, _ = _run(["prepare", "--help"], capsys)
    text = _squash(out)
    for tag in ("[synthetic] users", "[files] query log", "[[task]] name, kind, labels"):
        assert tag in text


def test_quiet_prints_nothing_but_errors(tmp_path, capsys):
    code, out, err = _run(
        ["prepare", "synthetic", "--users", "120", "--out", str(tmp_path / "d"), "-q"], capsys
    )
    assert code in (0, None) and out == "" and (tmp_path / "d" / "dataset.json").is_file()
    code, out, err = _run(
        ["prepare", "synthetic", "--users", "5", "--out", str(tmp_path / "e"), "-q"], capsys
    )
    assert code == 1 and out == "" and "--users" in err


def test_enum_option_rejects_a_wrong_value_with_the_list(capsys):
    code, _, err = _run(["train-sequence", "--data", "x", "--out", "y", "--log-to", "wandb"], capsys)
    assert code == 2
    assert "wandb" in err and "tensorboard" in err and "mlflow" in err


def _tiny_run(toy, out, tracker=None):
    from querylearn.config import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.run import train_sequence

    cfg = load_config(
        TrainConfig,
        None,
        {
            "model.channels": 8,
            "model.dilations": [1],
            "tasks": ["T1", "T3"],
            "t1.max_epochs": 2,
            "t2.max_epochs": 1,
            "threads": 1,
        },
    )
    return train_sequence(toy, out, config=cfg, tracker=tracker)


def test_jsonl_records_carry_timestamp_step_and_epoch(toy, tmp_path):
    seen = []
    _tiny_run(toy, tmp_path / "run", tracker=lambda name, record: seen.append((name, record)))
    records = [
        json.loads(line) for line in (tmp_path / "run" / "logs" / "01-T1.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["step"] == records[0]["steps"] + records[1]["steps"]  # cumulative within the fit
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["timestamp"]) for r in records)
    # the tracker receives exactly the records written to the logs
    assert [n for n, _ in seen] == ["01-T1", "01-T1", "02-T3"]
    assert seen[0][1] == records[0]


def test_tracker_scalars():
    from querylearn.cli.tracking import scalars

    record = {
        "timestamp": "t",
        "step": 5,
        "epoch": 1,
        "train_loss": 2.0,
        "improved": True,
        "valid": {"mrr@5": 0.25, "n": 10},
        "selection": None,
    }
    assert scalars(record, "01-T1") == {
        "01-T1/train_loss": 2.0,
        "01-T1/valid/mrr@5": 0.25,
        "01-T1/valid/n": 10.0,
    }


def _tiny_t1_run(toy, tmp_path) -> list[str]:
    """train-sequence arguments of a one-epoch T1 run of a tiny model into tmp_path/run."""
    return ["train-sequence", "--data", str(toy), "--out", str(tmp_path / "run"), "--tasks", "T1",
            "--epochs", "1", "--model.channels", "8", "--model.dilations", "[1]",
            "--threads", "1"]  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_log_to_tensorboard_writes_events(toy, tmp_path, capsys):
    code, _, err = _run(
        [*_tiny_t1_run(toy, tmp_path), "--log-to", "tensorboard", "-q"],
        capsys,
    )
    assert code in (0, None), err
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")
def test_log_to_mlflow_records_metrics(toy, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, _, err = _run(
        [*_tiny_t1_run(toy, tmp_path), "--log-to", "mlflow", "-q"],
        capsys,
    )
    assert code in (0, None), err
    found = list((tmp_path / "run" / "mlruns").rglob("01-T1/train_loss"))
    assert found, "no MLflow metric file for 01-T1/train_loss"


def test_train_sequence_table_is_complete_when_not_a_terminal(toy, tmp_path, capsys):
    code, out, err = _run(
        [
            "train-sequence",
            "--data",
            str(toy),
            "--out",
            str(tmp_path / "run"),
            "--epochs",
            "1",
            "--model.channels",
            "8",
            "--model.dilations",
            "[1]",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code in (0, None), err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "…" not in out
    last = next(line for line in out.splitlines() if "after T3" in line)
    for v in metrics["R"][-1]:
        assert f"{v:.4f}" in last


def test_track_reports_only_when_a_reporter_is_installed():
    from querylearn.progress import reporting, track

    class Recorder:
        def __init__(self):
            self.events = []

        def start(self, description, total):
            self.events.append(("start", description, total))
            return 7

        def advance(self, handle):
            self.events.append(("advance", handle))

        def stop(self, handle):
            self.events.append(("stop", handle))

    assert list(track(range(3), "x")) == [0, 1, 2]  # silent without a reporter
    rec = Recorder()
    with reporting(rec):
        assert list(track(range(2), "loop")) == [0, 1]
        assert list(track(iter("ab"), "gen")) == ["a", "b"]
    assert rec.events == [
        ("start", "loop", 2),
        ("advance", 7),
        ("advance", 7),
        ("stop", 7),
        ("start", "gen", None),
        ("advance", 7),
        ("advance", 7),
        ("stop", 7),
    ]
    assert list(track(range(1), "after")) == [0] and len(rec.events) == 8  # uninstalled again


def test_ncf_training_advances_a_bar_per_epoch(toy):
    from querylearn.data.dataset import load_dataset
    from querylearn.progress import reporting
    from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
    from querylearn.recsys.train import NCFConfig

    starts = []

    class Recorder:
        def start(self, description, total):
            starts.append((description, total))

        def advance(self, handle):
            pass

        def stop(self, handle):
            pass

    cfg = ColdstartConfig(threads=1, negatives=5, variants=("id",), baselines=(), ncf=NCFConfig(epochs=2))
    with reporting(Recorder()):
        coldstart_eval(load_dataset(toy), [], cfg)
    assert starts == [("training neumf", 2)]


@pytest.mark.parametrize(
    ("argv", "valid"),
    [
        (["prepare", "nosuch", "--out", "x"], ("synthetic", "movielens-100k", "kmrd", "files", "teracon")),
        (["prepare", "synthetic", "--out", "x", "--split", "random"], ("user", "example")),
        (["embed-init", "--data", "d", "--out", "o", "--source", "bert"], ("random", "kobert", "hf", "e5")),
        (["embed-init", "--data", "d", "--out", "o", "--pooling", "max"], ("subword-mean", "contextual")),
        (
            ["train-sequence", "--data", "d", "--out", "o", "--strategy", "ewc"],
            ("teracon", "finetune", "hat"),
        ),
        (["export-users", "--run", "r", "--out", "o", "--users", "some"], ("all", "test")),
        (["export-users", "--run", "r", "--out", "o", "--subset", "some"], ("all", "test")),
        (["coldstart-eval", "--data", "d", "--out", "o", "--ncf-model", "svd"], ("gmf", "mlp", "neumf")),
        (["coldstart-eval", "--data", "d", "--out", "o", "--model", "svd"], ("gmf", "mlp", "neumf")),
        (["coldstart-eval", "--data", "d", "--out", "o", "--variant", "x"], ("id", "init", "concat", "rep")),
        (["coldstart-eval", "--data", "d", "--out", "o", "--baseline", "x"], ("most-popular", "als", "bpr")),
        (["demo", "--out", "o", "--preset", "huge"], ("small", "full", "tiny")),
    ],
)
def test_enum_options_reject_a_wrong_value_with_the_list(argv, valid, capsys):
    code, _, err = _run(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1  # one line, as every bad input
    text = _squash(err)
    assert "Invalid value" in text and all(f"'{v}'" in text for v in valid), text
    assert f"see 'querylearn {argv[0]} --help'" in text


def test_cli_choices_equal_the_library():
    from querylearn.cli import choices
    from querylearn.cli.demo import PRESETS
    from querylearn.continual.strategies import STRATEGIES
    from querylearn.export import USERS
    from querylearn.recsys.coldstart import BASELINES
    from querylearn.recsys.ncf import MODELS, VARIANTS

    assert set(choices.STRATEGY_NAMES) == set(STRATEGIES.names())
    assert choices.EXPORT_USERS == USERS and choices.NCF_MODELS == MODELS and choices.NCF_VARIANTS == VARIANTS
    assert choices.COLDSTART_BASELINES == BASELINES and choices.DEMO_PRESETS == tuple(PRESETS)


def test_old_model_flag_is_a_hidden_alias(toy, tmp_path, capsys):
    code, out, _ = _run(["coldstart-eval", "--help"], capsys)
    assert "--ncf-model" in out and "--model " not in out  # hidden
    code, _, err = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy),
            "--out",
            str(tmp_path / "r"),
            "--model",
            "gmf",
            "--variant",
            "id",
            "--baseline",
            "most-popular",
            "--epochs",
            "1",
            "--negatives",
            "5",
            "--threads",
            "1",
            "-q",
        ],
        capsys,
    )
    assert code in (0, None), err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["config"]["ncf"]["model"] == "gmf" and "gmf-id" in report["methods"]
    assert report["config"]["ncf"]["device"] == "auto"  # the same default as train-sequence
    code, _, err = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy),
            "--out",
            str(tmp_path / "s"),
            "--model",
            "gmf",
            "--ncf-model",
            "mlp",
        ],
        capsys,
    )
    assert code == 1 and "disagree" in err


def test_shell_completion_offers_the_choices(monkeypatch, capsys):
    monkeypatch.setenv("_QUERYLEARN_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "querylearn train-sequence --strategy tera")
    monkeypatch.setenv("COMP_CWORD", "3")
    code, out, _ = _run([], capsys)
    assert code == 0
    assert out.split() == ["teracon", "teracon-noretention", "teracon-rho1", "teracon-plain"]
