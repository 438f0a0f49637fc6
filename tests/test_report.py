"""querylearn report (issue 17): per-row outcomes, intervals, references, every figure, plain/JSON output."""

from __future__ import annotations

import json

import numpy as np
import pytest

from querylearn import report as rep
from querylearn import report_maths as rm
from querylearn.cli.main import main
from querylearn.config import load_config
from querylearn.continual.config import TrainConfig
from querylearn.continual.run import train_sequence
from querylearn.data.dataset import load_dataset
from querylearn.metrics import ranking_metrics

TINY = {
    "model.channels": 8,
    "model.dilations": [1, 2],
    "t1.max_epochs": 1,
    "t2.max_epochs": 1,
    "later.max_epochs": 1,
    "t2.batch_size": 64,
    "later.batch_size": 64,
    "threads": 1,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory, toy_dataset):
    """teracon (seed 0), finetune (seeds 0 and 1), a cold-start report on teracon after T2 and T3,
    and an export of teracon's user vectors, all under one directory."""
    from querylearn.export import export_users
    from querylearn.recsys.coldstart import ColdstartConfig, coldstart_eval
    from querylearn.recsys.report import write_report
    from querylearn.recsys.representations import representations_from_runs
    from querylearn.recsys.train import NCFConfig

    root = tmp_path_factory.mktemp("study")
    for name, strategy, seed in (
        ("teracon", "teracon", 0),
        ("finetune-s0", "finetune", 0),
        ("finetune-s1", "finetune", 1),
    ):
        cfg = load_config(TrainConfig, None, {**TINY, "strategy": strategy, "seed": seed})
        train_sequence(toy_dataset, root / "runs" / name, config=cfg)
    ds = load_dataset(toy_dataset)
    cfg = ColdstartConfig(
        threads=1, negatives=9, variants=("rep",), baselines=("most-popular",), ncf=NCFConfig(epochs=1)
    )
    report = coldstart_eval(ds, representations_from_runs([root / "runs" / "teracon"], ["T2", "T3"]), cfg)
    write_report(root / "coldstart", report, cfg)
    export_users(root / "runs" / "teracon", root / "users" / "teracon.parquet")
    return root


# ---------------------------------------------------------------- the maths (known answers)


def test_per_row_metric_means_are_the_metrics():
    ranks = np.array([0, 1, 4, 5, 19, 2, 0])
    named = ranking_metrics(ranks, (5, 20))
    for metric in ("accuracy", "mrr@5", "hr@5", "ndcg@5", "mrr@20", "hr@20", "ndcg@20"):
        assert rm.per_row_metric(ranks, metric).mean() == pytest.approx(named[metric])
    with pytest.raises(ValueError, match="unknown metric"):
        rm.per_row_metric(ranks, "auc")


def test_chance_scores():
    assert rm.chance_score("hr@10", 20) == pytest.approx(0.5)  # 1 + 19 candidates (the example)
    assert rm.chance_score("accuracy", 4) == pytest.approx(0.25)
    assert rm.chance_score("mrr@5", 10) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 10)
    assert rm.chance_score("hr@10", 5) == pytest.approx(1.0)


def test_popularity_ranks_majority_class():
    train = np.array([2, 2, 2, 0, 0, 1])
    test = np.array([2, 0, 1, 3])
    assert rm.popularity_ranks(train, test, 4).tolist() == [0, 1, 2, 3]
    # the majority class's accuracy is the share of test rows with the most frequent training label
    assert rm.per_row_metric(rm.popularity_ranks(train, test, 4), "accuracy").mean() == 0.25


def test_bootstrap_interval_contains_the_mean_and_resamples_users():
    values = np.r_[np.ones(60), np.zeros(40)]
    lo, hi = rm.bootstrap_ci(values, seed=0)
    assert lo < 0.6 < hi and hi - lo < 0.25
    assert rm.bootstrap_ci(np.full(50, 0.3)) == pytest.approx((0.3, 0.3))
    # all rows of one user move together: one user -> no interval; two users with one row each vs
    # the same values spread over 100 rows each give the same (wide) interval
    assert rm.bootstrap_ci(values, np.zeros(100, dtype=int)) is None
    two = rm.bootstrap_ci(
        np.r_[np.ones(50), np.zeros(50)], np.r_[np.zeros(50, int), np.ones(50, int)], seed=3
    )
    assert two == pytest.approx(rm.bootstrap_ci(np.array([1.0, 0.0]), seed=3))


def test_pca_and_neighbours_known_answers():
    x = np.outer(np.arange(10.0), [1.0, 2.0, 0.0])  # points on one line
    coords, ratio = rm.pca_2d(x)
    assert ratio[0] == pytest.approx(1.0) and abs(ratio[1]) < 1e-12
    assert np.allclose(np.abs(coords[:, 0]), np.abs(np.arange(10.0) - 4.5) * np.sqrt(5))
    v = np.array([[0, 0], [9, 9], [1, 0], [0.9, 0.1], [0, 1], [-1, 0]])
    assert rm.nearest_neighbours(v, np.array([2]), 2, np.array([0, 1])).tolist() == [[3, 4]]


def test_column_reference_is_the_best_score_or_single():
    assert rm.column_reference([[0.1, 0.3, None], [0.0, None]], [0.2, None]) == [0.3, None]
    assert rm.column_reference([[0.1]], [0.5]) == [0.5]


# ---------------------------------------------------------------- the artifacts behind the intervals


def test_ranks_npz_reproduce_every_R_entry(study):
    from querylearn.continual.results import TrainMetrics, read_ranks

    run = study / "runs" / "teracon"
    m = TrainMetrics.read(run)
    ranks = read_ranks(run)
    for i, row in enumerate(m.R):
        for j, v in enumerate(row):
            if v is None:
                assert f"R_{i}_{j}" not in ranks
                continue
            assert rm.per_row_metric(ranks[f"R_{i}_{j}"], m.metric[j]).mean() == pytest.approx(v, abs=1e-12)
            assert len(ranks[f"users_{j}"]) == len(ranks[f"R_{i}_{j}"]) == m.R_detail[i][j]["n"]


def test_coldstart_ranks_reproduce_the_report(study):
    z = np.load(study / "coldstart" / "ranks.npz", allow_pickle=False)
    report = json.loads((study / "coldstart" / "report.json").read_text())
    assert list(z["methods"]) == list(report["methods"])
    for k, name in enumerate(z["methods"]):
        cold = z["cold"]
        assert (z["ranks"][k][cold] < 10).mean() == pytest.approx(report["methods"][name]["cold"]["hr@10"])
        assert (z["ranks"][k][~cold] < 1).mean() == pytest.approx(report["methods"][name]["warm"]["hr@1"])


# ---------------------------------------------------------------- figures


def _assert_labelled(fig):
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]
    assert axes
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    for ax in axes:
        assert ax.get_xlabel(), "x label missing"
        assert ax.get_ylabel(), "y label missing"
        assert ax.get_title() or suptitle, "title missing"


def test_every_figure_builds_with_labels_and_title(study):
    import matplotlib.pyplot as plt

    inputs = rep.discover(study)
    refs = rep.DatasetReferences(inputs.dataset_dir)
    runs = inputs.runs
    teracon = next(r for r in runs if r.name == "runs/teracon")
    figs = {
        "R": rep.fig_r_matrix(teracon.metrics, "R", [0.5, 0.5, 1.0]),
        "forgetting": rep.fig_forgetting(runs, rep._all_references(runs, refs), "forgetting"),
        "curves": rep.fig_curves(
            rep.learning_curves(teracon.path, teracon.metrics), teracon.metrics, "curves"
        ),
        "similarity": rep.fig_similarity(["T1", "T2"], np.array([[1.0, 0.5], [0.5, 1.0]]), "sim"),
        "coldstart": rep.fig_coldstart(inputs.coldstart[0]),
    }
    series = rep.mechanism_series(teracon.path, teracon.metrics)  # TERACON logs its mechanism
    assert series
    figs["mechanism"] = rep.fig_mechanism(series, "mechanism")
    pca = rep.pca_inputs(inputs.user_vectors[0], refs)
    assert [t for t, *_ in pca] == ["T3"]  # the toy's classify task
    task, vecs, labels, names = pca[0]
    figs["pca"] = rep.fig_user_pca(vecs, labels, names, "users", task)
    for name, fig in figs.items():
        try:
            _assert_labelled(fig)
        except AssertionError as exc:
            raise AssertionError(f"figure {name}: {exc}") from None
        plt.close(fig)


def test_heatmap_is_normalised_per_task_on_one_scale(study):
    import matplotlib.pyplot as plt

    m = rep.discover(study).runs[0].metrics
    ref = [0.5, 0.25, 1.0]
    fig = rep.fig_r_matrix(m, "R", ref)
    image = fig.axes[0].images[0]
    assert image.get_clim() == (0.0, 1.0)
    R = np.array([[np.nan if v is None else v for v in row] for row in m.R])
    assert np.allclose(np.ma.filled(image.get_array(), np.nan), R / np.array(ref), equal_nan=True)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert f"{m.R[-1][2]:.3f}" in texts  # the raw score is printed in the cell
    plt.close(fig)


def test_forgetting_figure_has_every_method_and_the_references(study):
    import matplotlib.pyplot as plt

    inputs = rep.discover(study)
    refs = rep.DatasetReferences(inputs.dataset_dir)
    fig = rep.fig_forgetting(inputs.runs, rep._all_references(inputs.runs, refs), "f")
    labels = fig.axes[2].get_legend_handles_labels()[1]  # T3, the classify task
    assert "runs/teracon" in labels and "finetune (2 seeds)" in labels
    assert "reference: majority class" in labels and "reference: chance" in labels
    page = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "reference: most-popular" in page and "finetune (2 seeds)" in page  # one legend for the page
    plt.close(fig)


def test_coldstart_figure_has_chance_line_and_intervals(study):
    import matplotlib.pyplot as plt

    info = rep.discover(study).coldstart[0]
    fig = rep.fig_coldstart(info)
    hr10 = fig.axes[2]
    assert hr10.get_ylabel() == "HR@10"
    assert any(np.allclose(line.get_ydata(), 10 / 10) for line in hr10.get_lines())  # 1 + 9: chance 1.0
    assert hr10.containers and any(getattr(c, "errorbar", None) is not None for c in hr10.containers)
    plt.close(fig)


# ---------------------------------------------------------------- the report and its output


def test_report_tables_references_intervals_and_seeds(study, tmp_path):
    md = rep.build_report(study, tmp_path).read_text(encoding="utf-8")
    assert "reference: majority class" in md and "reference: chance" in md and "reference: most-popular" in md
    assert "finetune (2 seeds: runs/finetune-s0, runs/finetune-s1)" in md and " ± " in md
    assert "neumf-rep[teracon@T2/mask-T2]" in md and "reference: chance (random order of 1 + 9)" in md
    assert "FWT needs single-model scores" in md
    assert "Nearest queries" in md and "before training" not in md  # no embed-init table: only after
    assert "| query (count) | after training: runs/finetune-s0 |" in md
    names = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {
        "forgetting.png",
        "R_runs_teracon.png",
        "coldstart_coldstart.png",
        "users_users_teracon_T3.png",
        "task_relation.png",
    } <= names
    for p in (tmp_path / "figures").glob("*.png"):
        assert f"figures/{p.name}" in md


def test_plain_output_when_not_a_terminal_has_full_numbers(study, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", str(study), "--out", str(tmp_path)])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "…" not in out
    report = json.loads((study / "coldstart" / "report.json").read_text())
    name = "neumf-rep[teracon@T3/mask-T3]"
    line = next(line for line in out.splitlines() if line.startswith(name))
    assert f"{report['methods'][name]['warm']['hr@10']:.4f}" in line
    assert f"{report['methods'][name]['warm']['ndcg@10']:.4f}" in line


def test_json_output(study, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["report", str(study), "--out", str(tmp_path), "--json"])
    assert e.value.code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "querylearn-report"
    teracon = doc["values"]["runs"]["runs/teracon"]
    lo, hi = teracon["R_ci95"][2][2]
    assert lo <= teracon["R"][2][2] <= hi
    assert doc["values"]["coldstart"]["coldstart"]["chance"]["hr@10"] == pytest.approx(1.0)
