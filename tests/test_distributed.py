"""train-sequence across 2 processes (gloo on CPU, 127.0.0.1 only) equals one process, same global batch."""

from __future__ import annotations

import json
import socket

import pytest
import torch.multiprocessing as mp
from test_continual import TINY, make_conflict_dataset

from querylearn.config import load_config
from querylearn.continual.config import TrainConfig
from querylearn.continual.run import train_sequence

SMALL = {
    **TINY,
    "strategy": "hat",  # gradient compensation after the all-reduce and a batch-independent regulariser
    "t1.max_epochs": 2,
    "t2.max_epochs": 3,
    "later.max_epochs": 3,
    "t1.batch_size": 33,  # odd: the two shards differ in size (17 + 16)
    "t2.batch_size": 32,
    "later.batch_size": 32,
    "t2.lr": 1e-2,
    "later.lr": 1e-2,
}


class Interrupted(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, runs: list[tuple[dict, int | None]], report: str) -> None:
    """Each of ``runs`` (train_sequence kwargs, stop after that task or None) in turn, on this rank."""
    import faulthandler
    import os

    from querylearn.continual import distributed

    faulthandler.enable()  # a native abort (gloo) prints this rank's Python stack in the test's output
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    results = []
    try:
        _runs(runs, results)
    finally:
        distributed.shutdown()  # every exit path leaves the group (a live gloo group aborts at exit)
    with open(f"{report}.{rank}", "w") as fh:
        json.dump(results, fh)


def _runs(runs: list[tuple[dict, int | None]], results: list) -> None:
    from querylearn.continual import distributed

    for kwargs, stop_after in runs:
        if "config" in kwargs:
            kwargs = {**kwargs, "config": load_config(TrainConfig, None, kwargs["config"])}
        trained: list[int] = []

        def on_task_end(position, name, metrics, stop_after=stop_after, trained=trained):
            trained.append(position)
            if position == stop_after:
                raise Interrupted

        try:
            results.append(train_sequence(**kwargs, on_task_end=on_task_end)["R"])
        except Interrupted:
            results.append("interrupted")
        results.append([distributed.world().size, trained])


def _run_2(runs: list[tuple[dict, int | None]], report) -> list[list]:
    """``runs`` in 2 processes (gloo, 127.0.0.1) -> each rank's results."""
    mp.spawn(_worker, args=(2, _free_port(), runs, str(report)), nprocs=2, join=True)
    return [json.loads(open(f"{report}.{r}").read()) for r in range(2)]


@pytest.fixture(scope="module")
def conflict(tmp_path_factory):
    return make_conflict_dataset(tmp_path_factory.mktemp("ddp") / "data", n_users=200)


def test_two_gloo_processes_give_one_process_r_matrix(conflict, tmp_path):
    one = train_sequence(conflict, tmp_path / "one", config=load_config(TrainConfig, None, SMALL))
    full = {"data": conflict, "out": tmp_path / "two", "config": SMALL}
    cut = {"data": conflict, "out": tmp_path / "cut", "config": SMALL}
    resume = {"resume": tmp_path / "cut"}  # the interrupted run, resumed under the same 2-process launch
    r0, r1 = _run_2([(full, None), (cut, 0), (resume, None)], tmp_path / "a")
    assert r0 == r1  # every rank reached the same metrics
    assert r0[1] == [2, [0, 1, 2]] and r0[2:4] == ["interrupted", [2, [0]]]  # really 2 processes
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["R"] == r0[0]
    for row_one, row_two in zip(one["R"], two["R"], strict=True):
        for a, b in zip(row_one, row_two, strict=True):
            assert (a is None and b is None) or abs(a - b) <= 1e-5
    # interrupted after T1, resumed from its checkpoint (T2 and T3 trained): the uninterrupted run's metrics
    assert r0[4:] == [two["R"], [2, [1, 2]]]
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["R"] == two["R"]


def test_nproc_forwards_every_flag(tmp_path, monkeypatch):
    import subprocess
    import sys

    from querylearn.cli.main import main

    seen = []

    def fake_run(cmd, check):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        main(["train-sequence", "--data", "D", "--out", out, "--nproc", "2", "--seed", "3",
              "--no-with-single", "--no-progress", "--set", "threads=1", "--model.channels", "16"])
    assert e.value.code in (0, None)
    assert seen == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                     "-m", "querylearn", "train-sequence", "--data", "D", "--out", out, "--seed", "3",
                     "--no-with-single", "--no-progress", "--set", "threads=1", "--model.channels", "16"]]


def test_nproc_builds_the_torchrun_command():
    import sys

    from querylearn.cli.train import torchrun_command
    from querylearn.errors import ConfigError

    assert torchrun_command(2, ["--data", "D", "--out", "R"]) == [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "querylearn", "train-sequence", "--data", "D", "--out", "R"]
    with pytest.raises(ConfigError, match="--nproc 0"):
        torchrun_command(0, [])


def test_mapped_sequences_give_the_int64_rows_of_the_file(tmp_path):
    """On the CPU train-sequence indexes the memory-mapped int32 file: the rows of the int64 tensor."""
    import numpy as np
    import torch

    from querylearn.continual.distributed import MappedSequences

    arr = np.arange(24, dtype=np.int32).reshape(6, 4)
    np.save(tmp_path / "s.npy", arr)
    seqs = MappedSequences(np.load(tmp_path / "s.npy", mmap_mode="r"), torch.device("cpu"))
    rows = torch.tensor([4, 0, 4])
    got = seqs[rows]
    assert got.dtype == torch.int64 and got.device.type == "cpu"
    assert torch.equal(got, torch.as_tensor(arr, dtype=torch.int64)[rows])
    assert seqs.shape == (6, 4) and len(seqs) == 6


@pytest.mark.parametrize("fails", [False, True])
def test_train_sequence_under_torchrun_leaves_the_process_group(fails, tmp_path, monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) the command leaves the process group when it closes, after a
    run that succeeded and after one that failed (a gloo group alive at exit aborts the process)."""
    from querylearn.cli.main import main
    from querylearn.continual import distributed
    from querylearn.continual import run as run_module
    from querylearn.errors import QuerylearnError

    calls = []

    def fake_train_sequence(*args, **kwargs):
        calls.append("train")
        if fails:
            raise QuerylearnError("the run failed")
        return {"R": [[0.5]]}

    monkeypatch.setattr(run_module, "train_sequence", fake_train_sequence)
    monkeypatch.setattr(distributed, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # not rank 0: returns without printing the tables
    with pytest.raises(SystemExit) as e:
        main(["train-sequence", "--data", str(tmp_path / "D"), "--out", str(tmp_path / "run"),
              "--no-progress"])
    assert (e.value.code not in (0, None)) == fails
    assert calls == ["train", "shutdown"]
