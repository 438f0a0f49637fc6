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
