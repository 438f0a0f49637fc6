"""coldstart-eval end to end on the toy dataset, shared candidate lists, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from querylearn.cli.main import main
from querylearn.data.dataset import load_dataset
from querylearn.errors import QuerylearnError
from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
from querylearn.recsys.interactions import COLD_RULE
from querylearn.recsys.report import ColdstartReport, ItemInit, render_csv
from querylearn.recsys.representations import UserRepresentations
from querylearn.recsys.train import NCFConfig

METRICS = {"n_users", "hr@1", "hr@5", "hr@10", "ndcg@10"}


def _write_reps(path, user_ids, vectors):
    frame = {"user_id": list(user_ids)}
    frame.update({f"v{j}": vectors[:, j].astype(np.float32) for j in range(vectors.shape[1])})
    pd.DataFrame(frame).to_parquet(path)


@pytest.fixture(scope="module")
def toy_reps(toy_dataset, tmp_path_factory):
    """A representation that knows each user's last query (the toy items follow it)."""
    ds = load_dataset(toy_dataset)
    last = ds.sequences[:, -1].astype(np.int64)
    vectors = np.eye(len(ds.vocab), dtype=np.float32)[last]  # one-hot, D = vocabulary size
    path = tmp_path_factory.mktemp("reps") / "toy_reps.parquet"
    _write_reps(path, ds.user_ids, vectors)
    return path


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_cli_end_to_end_on_toy(toy_dataset, toy_reps, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, _ = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy_dataset),
            "--out",
            str(out),
            "--users-from",
            str(toy_reps),
            "--negatives",
            "10",
            "--seed",
            "1",
            "--epochs",
            "2",
            "--cold-fraction",
            "0.2",
            "--threads",
            "1",
            "--variant",
            "id",
            "--variant",
            "rep",
            "--variant",
            "init",
            "--variant",
            "concat",
        ],
        capsys,
    )
    assert code in (0, None)
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["cold_rule"] == COLD_RULE
    assert report["negatives"] == 10 and report["seed"] == 1
    c = report["counts"]
    # toy: every fourth user has one interaction (zero training rows); 20% of the 150 warm become cold
    assert c["n_eval_users"] == 200 and c["n_cold_zero_train"] == 50 and c["n_cold_forced"] == 30
    assert (c["n_warm"], c["n_cold"]) == (120, 80)
    d = len(load_dataset(toy_dataset).vocab)
    expected = {"most-popular", "als", "bpr", "neumf-id"}
    for v in ("rep", "init", "concat"):
        expected |= {f"neumf-{v}[random-d{d}]", f"neumf-{v}[toy_reps]"}
    assert set(report["methods"]) == expected
    for entry in report["methods"].values():
        for group, n in (("warm", 120), ("cold", 80), ("all", 200)):
            assert set(entry[group]) == METRICS
            assert entry[group]["n_users"] == n
            for m in METRICS - {"n_users"}:
                assert 0.0 <= entry[group][m] <= 1.0
    rows = list(csv.DictReader((out / "report.csv").open(encoding="utf-8")))
    assert len(rows) == 3 * len(expected)
    assert set(rows[0]) == {"method", "group", "n_users", "hr@1", "hr@5", "hr@10", "ndcg@10"}
    assert (out / "config.toml").is_file()
    assert "neumf-rep" in stdout and "HR@10" in stdout
    typed = ColdstartReport.from_dict(report)  # the file is exactly the typed report
    assert typed.to_dict() == report
    assert (out / "report.csv").read_text(encoding="utf-8") == render_csv(typed)


def test_flags_not_given_take_the_config_defaults(toy_dataset, tmp_path, capsys, monkeypatch):
    """The CLI writes no default of its own: without flags the config is ColdstartConfig()."""
    import querylearn.recsys.coldstart as coldstart

    seen = []

    def fake_eval(dataset, sources, config, **kwargs):
        seen.append(config)
        raise QuerylearnError("stop here")

    monkeypatch.setattr(coldstart, "coldstart_eval", fake_eval)
    code, _, err = _run(["coldstart-eval", "--data", str(toy_dataset), "--out", str(tmp_path / "r")], capsys)
    assert code == 1 and "stop here" in err
    assert seen == [ColdstartConfig()]
    code, _, _ = _run(
        ["coldstart-eval", "--data", str(toy_dataset), "--out", str(tmp_path / "r"), "--negatives", "7",
         "--model", "gmf", "--seed", "3", "--threads", "2", "--device", "cpu", "--cold-fraction", "0.5"],
        capsys,
    )  # fmt: skip
    assert seen[1] == ColdstartConfig(
        negatives=7, seed=3, threads=2, cold_fraction=0.5, ncf=NCFConfig(model="gmf", device="cpu")
    )


def test_same_seed_same_candidates_for_every_method(toy_dataset):
    ds = load_dataset(toy_dataset)
    small = NCFConfig(epochs=1)
    a = coldstart_eval(ds, [], ColdstartConfig(threads=1, negatives=8, seed=3, variants=("id",), ncf=small))
    b = coldstart_eval(
        ds,
        [],
        ColdstartConfig(
            threads=1,
            negatives=8,
            seed=3,
            variants=("id",),
            baselines=("most-popular",),
            ncf=NCFConfig(epochs=1, model="gmf"),
        ),
    )
    c = coldstart_eval(
        ds, [], ColdstartConfig(threads=1, negatives=8, seed=4, variants=("id",), baselines=(), ncf=small)
    )
    assert a.candidates.sha256 == b.candidates.sha256 != c.candidates.sha256
    # most-popular does not depend on training, so it must score identically in both reports
    pop_a, pop_b = a.methods["most-popular"], b.methods["most-popular"]
    assert (pop_a.groups, pop_a.tied_targets) == (pop_b.groups, pop_b.tied_targets)


def test_worker_processes_give_the_report_of_the_loop(toy_dataset, toy_reps):
    """workers=2 (methods fitted side by side in spawned processes) reproduces workers=1 exactly:
    every metric, tie count, best epoch, validation curve and loss of every method, in table order."""
    from querylearn.recsys.coldstart import AUTO_MIN_WORK, resolve_workers
    from querylearn.recsys.representations import read_user_parquet

    ds = load_dataset(toy_dataset)
    rep = read_user_parquet(toy_reps)
    base = dict(threads=1, negatives=6, seed=2, cold_fraction=0.3, ncf=NCFConfig(epochs=2))
    loop = coldstart_eval(ds, [rep], ColdstartConfig(workers=1, **base))
    pool = coldstart_eval(ds, [rep], ColdstartConfig(workers=2, **base))
    assert list(loop.methods) == list(pool.methods) == [
        "most-popular", "als", "bpr", "neumf-id", f"neumf-rep[random-d{rep.dim}]", "neumf-rep[toy_reps]"
    ]  # fmt: skip
    for name, a in loop.methods.items():
        b = pool.methods[name]
        assert (a.groups, a.tied_targets, a.kind, a.ncf) == (b.groups, b.tied_targets, b.kind, b.ncf), name
        np.testing.assert_array_equal(loop.user_ranks[name], pool.user_ranks[name])
    # automatic: the toy's NCF work is far below the threshold, so no process is started
    split_work = len(ds.interactions.user_index) * 5 * 2 * 3
    assert split_work < AUTO_MIN_WORK
    from querylearn.recsys.coldstart import build_split

    cfg0 = ColdstartConfig(**base)
    assert resolve_workers(cfg0, build_split(ds, cfg0), []) == 1
    with pytest.raises(QuerylearnError, match="workers"):
        ColdstartConfig(workers=-1)


def test_learnt_representation_beats_random_for_cold_users(toy_dataset, toy_reps):
    """The toy items follow the last query, so a representation holding it must help cold users."""
    from querylearn.recsys.representations import read_user_parquet

    ds = load_dataset(toy_dataset)
    rep = read_user_parquet(toy_reps)
    cfg = ColdstartConfig(
        threads=1, negatives=10, variants=("rep",), baselines=("random",), ncf=NCFConfig(epochs=8, lr=0.01)
    )
    report = coldstart_eval(ds, [rep], cfg)
    learnt = report.methods["neumf-rep[toy_reps]"].groups["cold"]["hr@1"]
    random = report.methods[f"neumf-rep[random-d{rep.dim}]"].groups["cold"]["hr@1"]
    # ceiling ~0.4: users sharing a last query share several items, so HR@1 cannot reach 1
    assert learnt > random + 0.15


def test_missing_parquet_column_is_one_line_error(toy_dataset, tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"user": ["u00000"], "v0": np.float32([1.0])}).to_parquet(bad)
    code, _, err = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy_dataset),
            "--out",
            str(tmp_path / "r"),
            "--users-from",
            str(bad),
            "--negatives",
            "5",
        ],
        capsys,
    )
    assert code == 1
    assert "missing column 'user_id'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one message (rich may wrap a long line once)


def test_unknown_user_ids_are_one_line_error(toy_dataset, tmp_path, capsys):
    ds = load_dataset(toy_dataset)
    ids = [*ds.user_ids, "nobody"]
    bad = tmp_path / "stranger.parquet"
    _write_reps(bad, ids, np.ones((len(ids), 3), dtype=np.float32))
    code, _, err = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy_dataset),
            "--out",
            str(tmp_path / "r"),
            "--users-from",
            str(bad),
            "--negatives",
            "5",
        ],
        capsys,
    )
    assert code == 1
    assert "not users of the dataset" in err and "'nobody'" in err and "Traceback" not in err


def test_bad_inputs_raise_typed_errors(toy_dataset, tmp_path):
    from querylearn.errors import QuerylearnError
    from querylearn.recsys.representations import align_to_dataset, read_user_parquet

    gap = tmp_path / "gap.parquet"
    pd.DataFrame({"user_id": ["u00000"], "v0": np.float32([1.0]), "v2": np.float32([1.0])}).to_parquet(gap)
    with pytest.raises(QuerylearnError, match="missing v1"):
        read_user_parquet(gap)
    dup = tmp_path / "dup.parquet"
    _write_reps(dup, ["u00000", "u00000"], np.ones((2, 2), dtype=np.float32))
    with pytest.raises(QuerylearnError, match="appears twice"):
        read_user_parquet(dup)
    part = UserRepresentations("part", ["u00001"], np.ones((1, 2), dtype=np.float32), "part.parquet")
    ds = load_dataset(toy_dataset)
    with pytest.raises(QuerylearnError, match="no representation for 199"):
        align_to_dataset(part, ds.user_ids, np.ones(ds.n_users, dtype=bool))
    with pytest.raises(QuerylearnError, match="--negatives"):
        coldstart_eval(
            ds, [], ColdstartConfig(threads=1, negatives=99, variants=("id",), ncf=NCFConfig(epochs=1))
        )


def test_after_task_without_run_and_missing_export_are_errors(toy_dataset, tmp_path, capsys):
    code, _, err = _run(
        ["coldstart-eval", "--data", str(toy_dataset), "--out", str(tmp_path / "r"), "--after-task", "T2"],
        capsys,
    )
    assert code == 1 and "--after-task" in err


def test_several_runs_and_tasks_make_one_table(toy_dataset, tmp_path, capsys, monkeypatch):
    """--run A --run B --after-task T1 --after-task T3 -> four sources, exported through querylearn.export."""
    import querylearn.export as export

    ds = load_dataset(toy_dataset)
    calls = []

    def fake_export(run_dir, task=None, users="all", *, after_task=None, mask_task=None):
        calls.append((Path(run_dir).name, after_task, mask_task, users))
        rng = np.random.default_rng(len(calls))
        return list(ds.user_ids), rng.standard_normal((ds.n_users, 4)).astype(np.float32)

    monkeypatch.setattr(export, "export_user_representations", fake_export)
    # the checkpoint after each task; its mask by default (the last task it learnt)
    monkeypatch.setattr(export, "resolve_export", lambda run, after, mask: (None, after, mask or after))
    runs = [tmp_path / "teracon", tmp_path / "finetune"]
    for r in runs:
        r.mkdir()
    out = tmp_path / "report"
    code, _, _ = _run(
        [
            "coldstart-eval",
            "--data",
            str(toy_dataset),
            "--out",
            str(out),
            "--run",
            str(runs[0]),
            "--run",
            str(runs[1]),
            "--after-task",
            "T1",
            "--after-task",
            "T3",
            "--negatives",
            "5",
            "--epochs",
            "1",
            "--variant",
            "rep",
            "--baseline",
            "random",
            "--threads",
            "1",
        ],
        capsys,
    )
    assert code in (0, None)
    assert calls == [
        ("teracon", "T1", "T1", "all"),
        ("teracon", "T3", "T3", "all"),
        ("finetune", "T1", "T1", "all"),
        ("finetune", "T3", "T3", "all"),
    ]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert list(report["methods"]) == [
        "neumf-rep[random-d4]",
        "neumf-rep[teracon@T1/mask-T1]",
        "neumf-rep[teracon@T3/mask-T3]",
        "neumf-rep[finetune@T1/mask-T1]",
        "neumf-rep[finetune@T3/mask-T3]",
    ]


def test_item_text_vectors_initialise_the_item_side(toy_dataset):
    ds = load_dataset(toy_dataset)
    items = np.random.default_rng(0).standard_normal((ds.interactions.n_items, 6)).astype(np.float32)
    cfg = ColdstartConfig(threads=1, negatives=5, variants=("id",), baselines=(), ncf=NCFConfig(epochs=1))
    report = coldstart_eval(ds, [], cfg, item_vectors=items, item_vectors_origin="emb")
    assert report.item_init == ItemInit("emb", 6)
    assert report.methods["neumf-id"].groups["all"]["n_users"] == 200
    from querylearn.errors import QuerylearnError

    with pytest.raises(QuerylearnError, match="one row per item"):
        coldstart_eval(ds, [], cfg, item_vectors=items[:3])


def test_item_init_from_an_embed_init_table_end_to_end(toy_dataset, tmp_path, capsys):
    """--item-init EMB_DIR embeds the item titles with the table's model (tiny KoBERT built here)."""
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import kobert_tiny

    emb = tmp_path / "emb"
    code, _, err = _run(
        ["embed-init", "--data", str(toy_dataset), "--source", "kobert", "--model",
         str(kobert_tiny.tiny_kobert_dir()), "--out", str(emb)],
        capsys,
    )  # fmt: skip
    assert code in (0, None), err
    out = tmp_path / "report"
    code, _, err = _run(
        ["coldstart-eval", "--data", str(toy_dataset), "--out", str(out), "--negatives", "5", "--epochs", "1",
         "--variant", "id", "--baseline", "most-popular", "--item-init", str(emb), "--threads", "1"],
        capsys,
    )  # fmt: skip
    assert code in (0, None), err
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["item_init"]["origin"] == str(emb) and report["item_init"]["dim"] > 0
    assert set(report["methods"]) == {"most-popular", "neumf-id"}
