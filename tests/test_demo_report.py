"""The main job end to end (tiny preset) and the report's contents."""

from __future__ import annotations

import json

import numpy as np
import pytest

from querylearn.cli.demo import DemoSummary, run_demo
from querylearn.cli.main import main
from querylearn.data.dataset import load_dataset
from querylearn.report import mask_similarity

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    run_demo(out, preset="tiny", seed=0, e5=False)
    return out


def test_demo_writes_every_stage(demo_dir):
    for rel in (
        "data/dataset.json",
        "emb/random/vectors.npy",
        "runs/teracon-random/metrics.json",
        "runs/finetune-random/metrics.json",
        "coldstart/report.json",
        "report.md",
        "demo.json",
    ):
        assert (demo_dir / rel).is_file(), rel
    demo = json.loads((demo_dir / "demo.json").read_text())
    assert (demo["kind"], demo["schema_version"]) == ("demo-summary", 1)
    assert DemoSummary.from_dict(demo).strategies == demo["strategies"]
    assert demo["strategies"] == ["teracon-random", "finetune-random"]
    assert set(demo["seconds"]) >= {
        "prepare",
        "embed-init",
        "train-sequence",
        "coldstart-eval",
        "report",
        "total",
    }


def test_r_matrices_are_lower_triangular_scores(demo_dir):
    for run in ("teracon-random", "finetune-random"):
        m = json.loads((demo_dir / "runs" / run / "metrics.json").read_text())
        assert m["tasks"] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7"]
        R = m["R"]
        assert len(R) == 7
        for i, row in enumerate(R):
            for j, v in enumerate(row):
                if j > i:
                    assert v is None
                else:
                    assert v is not None and 0.0 <= v <= 1.0


def test_cold_user_count_matches_the_rule(demo_dir):
    ds = load_dataset(demo_dir / "data")
    per_user = np.bincount(ds.interactions.user_index, minlength=ds.n_users)
    # test = latest, valid = second latest when >= 4 interactions: k <= 2 leaves < 2 training rows
    expected_cold = int(((per_user >= 1) & (per_user <= 2)).sum())
    expected_warm = int((per_user >= 3).sum())
    rep = json.loads((demo_dir / "coldstart" / "report.json").read_text())
    assert rep["counts"]["n_cold"] == expected_cold and rep["counts"]["n_warm"] == expected_warm
    for name, entry in rep["methods"].items():
        assert entry["cold"]["n_users"] == expected_cold, name
        for g in ("warm", "cold", "all"):
            for k in ("hr@1", "hr@5", "hr@10", "ndcg@10"):
                assert 0.0 <= entry[g][k] <= 1.0
            assert entry[g]["hr@1"] <= entry[g]["hr@5"] <= entry[g]["hr@10"]
    # one source per run and task of the seed study (after T4 and after T7)
    assert "neumf-rep[teracon-random@T4/mask-T4]" in rep["methods"]
    assert "neumf-rep[teracon-random@T7/mask-T7]" in rep["methods"]


def test_report_has_tables_and_figures(demo_dir):
    md = (demo_dir / "report.md").read_text(encoding="utf-8")
    for heading in (
        "Tasks x methods",
        "Run `runs/teracon-random`",
        "Task relations",
        "Cold-start recommendation",
    ):
        assert heading in md
    assert "(**synthetic**)" in md
    figs = demo_dir / "figures"
    names = {p.name for p in figs.glob("*.png")}
    assert {
        "task_relation.png",
        "R_runs_teracon-random.png",
        "curves_runs_teracon-random.png",
        "coldstart_coldstart.png",
    } <= names
    for p in figs.glob("*.png"):
        assert p.read_bytes()[:8] == PNG
        assert f"figures/{p.name}" in md


def test_report_command_on_one_run(demo_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", str(demo_dir / "runs" / "finetune-random"), "--out", str(tmp_path)])
    assert e.value.code == 0
    assert "R matrix" in capsys.readouterr().out
    assert (tmp_path / "report.md").is_file()


def test_report_of_an_empty_dir_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", str(tmp_path)])
    assert e.value.code == 1
    assert "no metrics.json" in capsys.readouterr().err


def test_mask_similarity_known_answer():
    masks = np.array([[[1.0, 0.0]], [[0.0, 2.0]], [[1.0, 1.0]]])  # [N=3, M=1, C=2]
    sim = mask_similarity(masks)
    assert np.allclose(sim, [[1, 0, 2**-0.5], [0, 1, 2**-0.5], [2**-0.5, 2**-0.5, 1]])


def test_demo_with_a_kobert_folder_adds_a_kobert_run(tmp_path):
    import kobert_tiny  # tests/, put on sys.path by conftest.py

    out = tmp_path / "k"
    run_demo(out, preset="tiny", seed=0, e5=False, kobert=kobert_tiny.tiny_kobert_dir())
    demo = json.loads((out / "demo.json").read_text())
    assert demo["sources"] == ["random", "kobert"]
    assert demo["strategies"] == ["teracon-random", "teracon-kobert", "finetune-random"]
    meta = json.loads((out / "emb" / "kobert" / "meta.json").read_text())
    assert meta["source"] == "kobert" and meta["pooling"] == "subword-mean"
    rep = json.loads((out / "coldstart" / "report.json").read_text())
    assert "neumf-rep[teracon-kobert@T7/mask-T7]" in rep["methods"]


def test_demo_workers_give_the_numbers_of_one_run_after_another(demo_dir, tmp_path):
    """workers=2 trains the runs (and fits the cold-start methods) in worker processes: every R
    matrix, BWT and cold-start metric equals the sequential demo's (demo_dir: automatic = 1 here)."""
    from querylearn.cli.demo import _demo_workers

    assert _demo_workers(0, 150, 2) == 1 and _demo_workers(3, 150, 2) == 2
    assert _demo_workers(0, 5000, 2, threads=0) == 1  # a run on all cores leaves none to a second
    out = tmp_path / "w"
    run_demo(out, preset="tiny", seed=0, e5=False, workers=2, coldstart={"workers": 2})
    for run in ("teracon-random", "finetune-random"):
        a = json.loads((demo_dir / "runs" / run / "metrics.json").read_text())
        b = json.loads((out / "runs" / run / "metrics.json").read_text())
        assert (a["R"], a["bwt"], a["best_epoch"]) == (b["R"], b["bwt"], b["best_epoch"]), run
    a, b = (
        json.loads((d / "coldstart" / "report.json").read_text().replace(str(d), "D"))["methods"]
        for d in (demo_dir, out)
    )
    strip = lambda m: {k: {f: v for f, v in e.items() if f != "seconds"} for k, e in m.items()}  # noqa: E731
    assert strip(a) == strip(b)


def test_demo_summary_refuses_another_kind():
    from querylearn.errors import QuerylearnError

    with pytest.raises(QuerylearnError, match="demo-summary"):
        DemoSummary.from_dict({"kind": "train-metrics", "schema_version": 1})
