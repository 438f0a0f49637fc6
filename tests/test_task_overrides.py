"""``task_overrides``: per-task phase settings (the official recipe's T3 batch 1024, T4/T5 batch 32)."""

import json
import math

import pytest

from querylearn.config_loader import dump_toml, load_config, parse_sets
from querylearn.continual.config import TrainConfig
from querylearn.continual.loop import train_sequence
from querylearn.data.dataset import load_dataset
from querylearn.errors import ConfigError

TINY = {"model.channels": 16, "model.dilations": [1, 2], "threads": 1}


def test_override_changes_only_its_task(tmp_path):
    sets = parse_sets(["task_overrides.4.batch_size=32", "task_overrides.5.lr=1"])
    cfg = load_config(TrainConfig, None, sets)
    assert [cfg.phase(i).batch_size for i in range(6)] == [32, 1024, 1024, 32, 1024, 1024]
    assert cfg.phase(4).lr == 1.0 and isinstance(cfg.phase(4).lr, float)
    assert cfg.phase(3).lr == cfg.later.lr == 1e-4  # the rest of the phase is `later`'s
    assert cfg.later.batch_size == 1024  # the base phase is not modified
    # the resolved config.toml reads back to the same config
    p = tmp_path / "c.toml"
    p.write_text(dump_toml(cfg), encoding="utf-8")
    assert load_config(TrainConfig, p) == cfg
    assert load_config(TrainConfig).phase(3) == load_config(TrainConfig).later  # default: no overrides


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"task_overrides.4.batch_sise": 32}, r"task_overrides\.4\.batch_sise: unknown key"),
        ({"task_overrides.T4.batch_size": 32}, r"task_overrides\.T4: key must be a 1-based task position"),
        ({"task_overrides.0.batch_size": 32}, r"task_overrides\.0: key must be a 1-based task position"),
        ({"task_overrides.4.batch_size": 0}, r"task_overrides\.4\.batch_size: must be >= 1"),
        ({"task_overrides.4.batch_size": 3.5}, r"task_overrides\.4\.batch_size: expected an integer"),
        ({"task_overrides.4.lr": "fast"}, r"task_overrides\.4\.lr: expected a number"),
        ({"task_overrides.4": 32}, r"task_overrides\.4: must be a table"),
    ],
)
def test_bad_overrides_are_config_errors_naming_the_key(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, sets)


def test_training_uses_the_task_batch_size(toy, tmp_path):
    n_train = load_dataset(toy).task("T3").rows("train").size
    over = {**TINY, "t1.max_epochs": 1, "t2.max_epochs": 1, "later.max_epochs": 1, "strategy": "finetune"}
    over["task_overrides.3.batch_size"] = 16
    cfg = load_config(TrainConfig, None, over)
    train_sequence(toy, tmp_path / "run", config=cfg)
    t2 = json.loads((tmp_path / "run" / "logs" / "02-T2.jsonl").read_text().splitlines()[0])
    t3 = json.loads((tmp_path / "run" / "logs" / "03-T3.jsonl").read_text().splitlines()[0])
    assert t2["steps"] == 1  # the toy's T2 fits in one batch of t2's 1024
    assert t3["steps"] == math.ceil(n_train / 16) > 1


def test_bench_budget_follows_task_overrides():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_sequence

    resolved = {
        "t1": {"max_epochs": 10},
        "t2": {"max_epochs": 20},
        "later": {"max_epochs": 12},
        "task_overrides": {"4": {"max_epochs": 30}, "3": {"batch_size": 32}},
    }
    assert bench_sequence.budget(resolved, 5, 1) == [10, 20, 12, 30, 12]
    assert bench_sequence.budget(resolved, 5, 2) == [20, 40, 24, 60, 24]


def _bench_json(rows_per_seed):
    """A bench_sequence output whose TERACON runs have the given R matrices (5 tasks)."""
    runs = []
    for seed, R in enumerate(rows_per_seed):
        metrics = {"R": R, "seconds_per_epoch": [1.0] * 5, "epochs": [6] * 5, "best_epoch": [1] * 5}
        runs.append({"strategy": "teracon", "seed": seed, "metrics": metrics, "wall_seconds": 10.0})
    return {"runs": runs, "overrides": {}}


def test_side_by_side_acceptance_is_mean_plus_std_against_official(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import official_side_by_side as sbs

    off = sbs.OFFICIAL
    # seed a: exactly the official diagonal and last row; seed b: 0.002 below on T1, 0.01 below on T4
    a = [[None] * 5 for _ in range(5)]
    for j in range(5):
        a[j][j] = off["R_diag"][j]
        a[4][j] = off["R_last"][j]
    a[2][0] = a[2][1] = 0.0  # after T3 on T1, T2
    b = [row[:] for row in a]
    b[0][0] -= 0.002
    b[3][3] -= 0.01
    b[4][3] -= 0.01
    b[4][4] = 0.0  # T5 right after learning it: far below on this seed
    b[4][0] = 0.0  # T1 after T5
    res = sbs.config_summary(_bench_json([a, b]))
    assert res["R_diag"][0]["mean"] == pytest.approx(off["R_diag"][0] - 0.001)
    # mean + std = official - 0.001 + 0.00141 >= official
    assert res["acceptance"]["R_diag"][:4] == [True, True, True, True]
    assert res["acceptance"]["R_diag"][4] is True  # mean + std of (x, 0) = x/2 + x/√2 >= x
    c = [row[:] for row in a]
    c[1][1] -= 0.003
    tight = sbs.config_summary(_bench_json([c, c]))  # std 0: any shortfall fails
    assert tight["acceptance"]["R_diag"] == [True, False, True, True, True]
    assert tight["R_after_T3"][3]["mean"] is None and tight["R_after_T3"][1]["per_seed"] == [0.0, 0.0]
    # the script writes both outputs
    p = tmp_path / "bench.json"
    p.write_text(json.dumps(_bench_json([a, b])), encoding="utf-8")
    assert sbs.main(["--config", f"x={p}", "--out", str(tmp_path / "side")]) == 0
    assert json.loads((tmp_path / "side.json").read_text())["configs"]["x"]["seeds"] == [0, 1]
    assert "| T1 (mrr@5) | 0.0077 |" in (tmp_path / "side.md").read_text()


def test_side_by_side_reads_unfinished_run_dirs(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import official_side_by_side as sbs

    run = tmp_path / "run"
    run.mkdir()
    metrics = {"strategy": "teracon", "seed": 3, "R": [[0.01, None], [0.005, 0.02]]}
    metrics |= {"seconds_per_epoch": [2.0, 9.0], "epochs": [8, 7], "best_epoch": [3, 2]}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    res = sbs.config_summary(sbs.runs_from_dirs([run]))  # a run stopped after T2 of 5
    assert [ms["mean"] for ms in res["R_diag"]] == [0.01, 0.02, None, None, None]
    assert res["R_after_T3"][0]["mean"] is None and res["R_last"][0]["n"] == 0
    assert res["acceptance"]["R_diag"] == [True, True, None, None, None]
    assert res["seconds_per_epoch"] == [2.0, 9.0, None, None, None] and res["epochs"][4] == [None]
    assert sbs.main(["--runs", f"x={run}", "--out", str(tmp_path / "side")]) == 0
    assert "| T3 (mrr@5) | 0.0294 | – |" in (tmp_path / "side.md").read_text()


def test_bench_reuses_runs_made_before_a_key_existed():
    """A stored run without a later-added key is reused when the new run holds that key's default."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_sequence

    defaults = {"lr": 1e-3, "batching": "pair", "model": {"channels": 64, "padding": "parity"}}
    new = {"lr": 1e-3, "batching": "pair", "model": {"channels": 64, "padding": "parity"}}
    old = {"lr": 1e-3, "model": {"channels": 64}}
    assert bench_sequence.same_settings(old, new, defaults)
    assert not bench_sequence.same_settings(old, {**new, "batching": "user"}, defaults)
    exact = {**new, "model": {"channels": 64, "padding": "exact"}}
    assert not bench_sequence.same_settings(old, exact, defaults)
    assert not bench_sequence.same_settings({**old, "lr": 1e-4}, new, defaults)
    assert not bench_sequence.same_settings({**old, "removed": 1}, new, defaults)
    assert not bench_sequence.same_settings(None, new, defaults)
