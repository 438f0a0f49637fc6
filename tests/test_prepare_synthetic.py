import hashlib

import numpy as np
import pytest

from querylearn.cli.main import main
from querylearn.data.dataset import load_dataset
from querylearn.errors import QuerylearnError


def _digest(d):
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def test_prepare_synthetic_twice_is_byte_identical(tmp_path, capsys):
    for name in ("a", "b"):
        with pytest.raises(SystemExit) as e:
            main(["prepare", "synthetic", "--users", "300", "--seed", "1", "--out", str(tmp_path / name)])
        assert e.value.code == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ds = load_dataset(tmp_path / "a")
    assert ds.manifest["synthetic"] is True and ds.manifest["source"] == "synthetic"
    assert ds.task_names == ["T1", "T2", "T3", "T4", "T5", "T6", "T7"]
    assert [t.kind for t in ds.tasks] == ["next_query"] + ["multi_target"] * 4 + ["classify"] * 2
    assert ds.seq_len == 60 and ds.n_users == 300
    assert ds.task("T7").n_labels == 2 and ds.task("T6").n_labels == 7
    # the cold-start population: a realistic share of users has fewer than 2 interactions
    per_user = np.bincount(ds.interactions.user_index, minlength=ds.n_users)
    assert 0.15 < (per_user < 2).mean() < 0.5
    assert "T1" in capsys.readouterr().out


def test_noisy_task_is_inserted(tmp_path):
    from querylearn.data.build import BuildOptions
    from querylearn.data.sources import prepare

    m = prepare("synthetic", tmp_path / "n", BuildOptions(seed=2), users=200, noisy_task=True)
    names = [t["name"] for t in m["tasks"]]
    assert "TN" in names and len(names) == 8
    tn = next(t for t in m["tasks"] if t["name"] == "TN")
    assert tn["n_labels"] == 50 and tn["n_users"] == 100


def test_too_few_users_is_a_clear_error(tmp_path):
    from querylearn.data.build import BuildOptions
    from querylearn.data.sources import prepare

    with pytest.raises(QuerylearnError, match="--users 100 or more"):
        prepare("synthetic", tmp_path / "x", BuildOptions(), users=20)
