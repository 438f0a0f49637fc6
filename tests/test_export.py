"""export-users: Parquet with user_id + v0..v{D-1} float32 and file metadata; library function."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from toy import make_toy_dataset  # tests/toy.py

from querylearn.cli.main import main
from querylearn.config import load_config
from querylearn.continual.checkpoint import load_checkpoint
from querylearn.continual.config import TrainConfig
from querylearn.continual.run import train_sequence
from querylearn.data.dataset import load_dataset
from querylearn.errors import QuerylearnError
from querylearn.export import export_user_representations


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("exp")
    make_toy_dataset(base / "ds")
    cfg = load_config(
        TrainConfig,
        None,
        {
            "model.channels": 16,
            "model.dilations": [1, 2],
            "t1.max_epochs": 1,
            "threads": 1,
            "t2.max_epochs": 1,
            "later.max_epochs": 1,
            "t2.batch_size": 64,
            "later.batch_size": 64,
        },
    )
    train_sequence(base / "ds", base / "run", config=cfg)
    return base


def test_export_parquet_contract(run, tmp_path):
    out = tmp_path / "users.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["export-users", "--run", str(run / "run"), "--out", str(out), "--task", "T2", "--wide"])
    assert exc.value.code == 0
    table = pq.read_table(out)
    assert table.schema.names == ["user_id"] + [f"v{d}" for d in range(16)]
    assert str(table.schema.field("user_id").type) == "string"
    assert all(str(table.schema.field(f"v{d}").type) == "float" for d in range(16))
    ds = load_dataset(run / "ds")
    assert table.column("user_id").to_pylist() == ds.user_ids
    meta = json.loads(table.schema.metadata[b"querylearn"])
    assert meta["task"] == "T2" and meta["users"] == "all" and meta["checkpoint"].endswith("03-T3.json")
    assert meta["dim"] == 16 and meta["pooling"] == "last-position"
    # same vectors as the library function and as a direct forward pass with T2's mask at smax
    ids, vecs = export_user_representations(run / "run", task="T2")
    assert ids == ds.user_ids and vecs.dtype == np.float32 and vecs.shape == (ds.n_users, 16)
    table_vecs = np.stack([table.column(f"v{d}").to_numpy() for d in range(16)], axis=1)
    assert np.array_equal(table_vecs, vecs)
    model, _, _ = load_checkpoint(run / "run" / "checkpoints" / "03-T3.json")
    with torch.no_grad():
        direct = model.encode(
            torch.as_tensor(ds.sequences[:5].astype(np.int64)), model.task_masks("T2", 50.0)
        )
    assert np.allclose(direct.numpy(), vecs[:5], atol=1e-6)
    # a different task's mask gives different vectors
    _, v3 = export_user_representations(run / "run", task="T3")
    assert not np.allclose(v3, vecs)


def test_export_test_users_only(run):
    ids, vecs = export_user_representations(run / "run", users="test")
    ds = load_dataset(run / "ds")
    assert ids == [ds.user_ids[i] for i in np.flatnonzero(ds.user_split == 2)]
    assert vecs.shape == (len(ids), 16)


def test_export_errors(run, tmp_path):
    with pytest.raises(QuerylearnError, match="has learnt"):
        export_user_representations(run / "run", task="T9")
    with pytest.raises(QuerylearnError, match="--users"):
        export_user_representations(run / "run", users="some")
    with pytest.raises(QuerylearnError, match="run.json|file not found"):
        export_user_representations(tmp_path / "none")


def test_export_single_uses_the_tasks_own_model(run, tmp_path):
    cfg = load_config(
        TrainConfig,
        None,
        {
            "strategy": "single",
            "tasks": ["T1", "T3"],
            "model.channels": 8,
            "model.dilations": [1],
            "t1.max_epochs": 1,
            "t2.max_epochs": 1,
        },
    )
    train_sequence(run / "ds", tmp_path / "single", config=cfg)
    ids, vecs = export_user_representations(tmp_path / "single", task="T1")
    model, meta, _ = load_checkpoint(tmp_path / "single" / "checkpoints" / "01-T1.json")
    assert meta["tasks_seen"] == ["T1"] and model.task_names == ["T1"]
    ds = load_dataset(run / "ds")
    with torch.no_grad():
        direct = model.encode(torch.as_tensor(ds.sequences.astype(np.int64)), None)
    assert np.allclose(direct.numpy(), vecs, atol=1e-6)


def test_export_of_a_run_without_task_checkpoints(run, tmp_path):
    """Checkpoints written before ``task_checkpoints``: the last checkpoint holding the task answers."""
    cfg = load_config(
        TrainConfig,
        None,
        {"strategy": "single", "tasks": ["T1", "T3"], "model.channels": 8, "model.dilations": [1],
         "t1.max_epochs": 1, "t2.max_epochs": 1},
    )
    train_sequence(run / "ds", tmp_path / "old", config=cfg)
    new_ids, new_vecs = export_user_representations(tmp_path / "old", task="T1")
    for path in (tmp_path / "old" / "checkpoints").glob("*.json"):
        meta = json.loads(path.read_text())
        del meta["task_checkpoints"]
        path.write_text(json.dumps(meta))
    ids, vecs = export_user_representations(tmp_path / "old", task="T1")
    assert ids == new_ids and np.array_equal(vecs, new_vecs)


def test_after_task_selects_the_checkpoint_after_that_task(run, tmp_path):
    """Issue 17: --after-task T picks the model trained on T1..T only (not the run's last one);
    the mask is its own choice (default: that checkpoint's last task)."""
    cfg = load_config(
        TrainConfig,
        None,
        {"strategy": "finetune", "tasks": ["T1", "T2", "T3"], "model.channels": 8, "model.dilations": [1],
         "t1.max_epochs": 1, "t2.max_epochs": 2, "later.max_epochs": 1, "threads": 1},
    )
    train_sequence(run / "ds", tmp_path / "ft", config=cfg)
    ds = load_dataset(run / "ds")
    seqs = torch.as_tensor(ds.sequences.astype(np.int64))
    _, after1 = export_user_representations(tmp_path / "ft", after_task="T1")
    _, after2 = export_user_representations(tmp_path / "ft", after_task="T2")
    _, last = export_user_representations(tmp_path / "ft")
    # fine-tuning on T2 moves the shared backbone, so the two exports differ
    assert not np.allclose(after1, after2, atol=1e-4)
    for name, vecs in (("01-T1", after1), ("02-T2", after2), ("03-T3", last)):
        model, _, _ = load_checkpoint(tmp_path / "ft" / "checkpoints" / f"{name}.json")
        with torch.no_grad():
            direct = model.encode(seqs, None).numpy()
        assert np.allclose(direct, vecs, atol=1e-6), name
    # the old behaviour (the last model, an earlier task's mask) stays reachable
    _, old = export_user_representations(tmp_path / "ft", mask_task="T1")
    assert np.array_equal(old, last)
    out = tmp_path / "u.parquet"
    with pytest.raises(SystemExit) as exc:
        main(["export-users", "--run", str(tmp_path / "ft"), "--out", str(out), "--after-task", "T2"])
    assert exc.value.code == 0
    meta = json.loads(pq.read_table(out).schema.metadata[b"querylearn"])
    assert meta["after_task"] == "T2" and meta["task"] == "T2" and meta["checkpoint"].endswith("02-T2.json")
    with pytest.raises(QuerylearnError, match="--mask-task T3: the model after T1 has learnt T1"):
        export_user_representations(tmp_path / "ft", after_task="T1", mask_task="T3")
    with pytest.raises(QuerylearnError, match="--after-task T9"):
        export_user_representations(tmp_path / "ft", after_task="T9")


def test_after_task_with_an_earlier_mask_on_teracon(run):
    """The teracon run of the fixture: after T2 with T1's mask is the checkpoint 02 model under T1's mask."""
    from querylearn.export import resolve_export

    path, after, mask = resolve_export(run / "run", "T2", "T1")
    assert path.name == "02-T2.json" and (after, mask) == ("T2", "T1")
    _, vecs = export_user_representations(run / "run", after_task="T2", mask_task="T1")
    model, _, _ = load_checkpoint(path)
    ds = load_dataset(run / "ds")
    with torch.no_grad():
        ids = torch.as_tensor(ds.sequences.astype(np.int64))
        direct = model.encode(ids, model.task_masks("T1", model.smax))
    assert np.allclose(direct.numpy(), vecs, atol=1e-6)


def test_export_subset_and_its_old_name(run, tmp_path, capsys):
    from querylearn.data.splits import TEST

    ds = load_dataset(run / "ds")
    want = [u for u, s in zip(ds.user_ids, ds.user_split, strict=True) if s == TEST]
    for flag in ("--subset", "--users"):  # --users: the old name, a hidden alias
        out = tmp_path / f"{flag[2:]}.parquet"
        with pytest.raises(SystemExit) as exc:
            main(["export-users", "--run", str(run / "run"), "--out", str(out), flag, "test"])
        assert exc.value.code == 0
        assert pq.read_table(out).column("user_id").to_pylist() == want
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["export-users", "--run", str(run / "run"), "--out", str(tmp_path / "x.parquet"),
              "--subset", "test", "--users", "all"])  # fmt: skip
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "--subset test and --users all disagree" in err and "Traceback" not in err
