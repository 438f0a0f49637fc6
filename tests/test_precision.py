"""precision = "auto": bf16 only where the device computes it natively; the choice lands in run.json."""

import json

import pytest
import torch
from toy import make_toy_dataset  # tests/toy.py

from querylearn.config import load_config
from querylearn.continual.config import TrainConfig
from querylearn.continual.precision import cpu_flags, native_bf16, resolve_precision
from querylearn.continual.run import train_sequence

CPU = torch.device("cpu")
WITH_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n"
WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"


def test_cpu_flags_are_read_from_cpuinfo_text():
    assert cpu_flags(WITH_BF16) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16"}
    assert cpu_flags("") == set()
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}  # arm64 spelling


def test_auto_picks_bf16_only_with_native_support():
    assert native_bf16(CPU, WITH_BF16) == (True, "CPU has avx512_bf16")
    assert resolve_precision("auto", CPU, WITH_BF16).used == "bf16"
    choice = resolve_precision("auto", CPU, WITHOUT)
    assert choice.used == "fp32" and "none of avx512_bf16, amx_bf16" in choice.reason
    assert resolve_precision("fp32", CPU, WITH_BF16).used == "fp32"


def test_bf16_without_native_support_warns_but_obeys():
    with pytest.warns(UserWarning, match="25x slower"):
        assert resolve_precision("bf16", CPU, WITHOUT).used == "bf16"


def test_run_json_records_the_choice(tmp_path):
    make_toy_dataset(tmp_path / "ds")
    overrides = {"model.channels": 8, "model.dilations": [1], "threads": 1}
    cfg = load_config(TrainConfig, None, {**overrides, "precision": "auto", "t1.max_epochs": 1,
                                          "tasks": ["T1"], "device": "cpu"})  # fmt: skip
    train_sequence(tmp_path / "ds", tmp_path / "run", config=cfg)
    run = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))
    native, why = native_bf16(CPU)
    used = "bf16" if native else "fp32"
    assert run["precision"] == {"requested": "auto", "used": used, "reason": f"auto: {why}"}
    assert 'precision = "auto"' in (tmp_path / "run" / "config.toml").read_text(encoding="utf-8")
