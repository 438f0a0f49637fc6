"""bench/run_all.py: rows and ratios, the readers of the benchmarks' JSON, the Markdown table and the
README block generated from it (fixtures only: the benchmarks themselves are not run here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run_all  # noqa: E402

ANCHORS = """\
| task | batches per epoch | seconds per epoch (median, min–max) | peak RSS |
|---|---|---|---|
| T1 | 22 × 32 | 3 (3–3) | 501 MiB |
| T2 (retention on T1) | 26 × 1024 | 91 (87–99) | 5.05 GiB |
| T3 (retention on T1, T2) | 16 × 1024 | 54 (53–68) | 6.93 GiB |
"""


def _summary(rows: list[run_all.Row], quick: bool = False) -> dict:
    return {
        "kind": "bench-summary",
        "schema_version": 1,
        "started": "2026-12-02 17:00 UTC",
        "quick": quick,
        "threads": 2,
        "seconds": 812.4,
        "machine": {
            "cpu_model": "AMD EPYC 7B13",
            "cpu_family": "25",
            "cpu_model_number": "1",
            "vector_extensions": ["avx2", "fma"],
            "cores": 2,
            "torch": "2.13.0+cpu",
            "nice": 10,
            "load_start": [0.5, 0.4, 0.3],
            "load_end": [1.9, 1.2, 0.8],
            "commit": "abc1234",
        },
        "benchmarks": [
            {"name": "embed", "command": "python bench/bench_embed.py", "seconds": 12.0, "status": "ok"},
            {"name": "train-user-batching", "status": "skipped", "detail": "no key", "seconds": 0.0},
        ],
        "rows": [run_all.dataclasses.asdict(r) for r in rows],
    }


def test_ratio_is_a_speed_up_for_times_and_rates():
    t = run_all.Row("train", "T1", 4.0, "s", 3.0, "same sitting", "floor")
    assert t.ratio == pytest.approx(0.75)  # 3 s floor / 4 s measured
    q = run_all.Row("embed", "q/s", 300_000, "q/s", 200_000, "previous release", "x", higher_is_better=True)
    assert q.ratio == pytest.approx(1.5)
    assert run_all.Row("x", "y", 1.0, "s").ratio is None
    assert run_all.Row("x", "y", 0.0, "s", 1.0).ratio is None


def test_same_sitting_rows_come_first():
    rows = [
        run_all.Row("a", "official", 1.0, "s", 2.0, "another day"),
        run_all.Row("b", "none", 1.0, "s"),
        run_all.Row("c", "prev", 1.0, "s", 2.0, "previous release"),
        run_all.Row("d", "floor", 1.0, "s", 2.0, "same sitting"),
    ]
    assert [r.bench for r in run_all.sorted_rows(rows)] == ["d", "c", "a", "b"]


def test_official_anchors_read_from_the_cost_table(tmp_path):
    path = tmp_path / "anchors.md"
    path.write_text("# Reference\n\nsome text | T9 | x\n\n" + ANCHORS, encoding="utf-8")
    assert run_all.official_anchors(path) == {"T1": 3.0, "T2": 91.0, "T3": 54.0}
    assert run_all.official_anchors(tmp_path / "missing.md") == {}


def test_readers_turn_benchmark_json_into_rows(tmp_path):
    (tmp_path / "embed.json").write_text(
        json.dumps(
            {
                "n_queries": 100000,
                "rows": [
                    {"phase": "tokenise only (KoBERT rules)", "queries_per_s": 250000},
                    {"phase": "subword-mean total (embed)", "queries_per_s": 320000},
                    {"phase": "subword-mean total, one torch thread", "queries_per_s": 200000},
                ],
            }
        )
    )
    (tmp_path / "coldstart").mkdir()
    (tmp_path / "coldstart" / "bench.json").write_text(
        json.dumps({"wall_seconds": 25.0, "workers": 2, "baseline_wall_seconds": 45.0})
    )
    (tmp_path / "train.json").write_text(
        json.dumps(
            {
                "runs": [{"seconds_per_epoch": {"T1": 6.0, "T2": 72.0}}],
                "t1_conv_floor": [{"t1_epoch_floor_seconds": 4.5}],
            }
        )
    )
    prev = {"embed_total_qps": 223452, "embed_tokenise_qps": 197760, "coldstart_seconds": 61.64,
            "train_T1": 1.84, "train_T2": 20.2}  # fmt: skip
    ctx = run_all.Ctx(tmp_path, False, 2, prev, {"T1": 3.0, "T2": 91.0})
    embed = run_all.rows_embed(ctx)
    assert [(r.ref_kind, r.reference) for r in embed] == [
        ("same sitting", 200000),
        ("previous release", 223452),
        ("previous release", 197760),
    ]
    assert embed[0].ratio == pytest.approx(1.6)
    cold = run_all.rows_coldstart(ctx)
    assert [(r.ref_kind, round(r.ratio, 3)) for r in cold] == [
        ("same sitting", 1.8),
        ("previous release", round(61.64 / 25, 3)),
    ]
    train = {(r.what.split(",")[0], r.ref_kind): r for r in run_all.rows_train(ctx)}
    assert train[("T1 epoch", "same sitting")].ratio == pytest.approx(0.75)
    assert train[("T2 epoch (pair batching)", "previous release")].reference == 20.2
    assert train[("T2 epoch", "another day")].ratio == pytest.approx(91 / 72)


def test_memory_rows_compare_the_default_with_pair_batching_and_the_official_peak(tmp_path):
    (tmp_path / "memory.json").write_text(
        json.dumps(
            {
                "official_peak_rss_gib": {"T1": 0.49, "T2": 5.05, "T3": 6.93},
                "variants": {"default": {"peak_rss_gib": 0.76}, "pair": {"peak_rss_gib": 2.67}},
            }
        )
    )
    ctx = run_all.Ctx(tmp_path, False, 2, {}, {})
    rows = run_all.rows_memory(ctx)
    assert [(r.value, r.reference, r.ref_kind) for r in rows] == [
        (0.76, 2.67, "same sitting"),
        (0.76, 6.93, "another day"),
    ]
    assert rows[0].ratio == pytest.approx(2.67 / 0.76) and rows[0].note == "goal <= 2 GiB"
    cmd = run_all.cmd_memory(_ctx_with_data(tmp_path))
    variants = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--variant"]
    assert variants[0].startswith("default:task_overrides.4.batch_size=32")
    assert variants[1].startswith('pair:multi_target_batching="pair";task_overrides.4.batch_size=32')


def _ctx_with_data(tmp_path):
    ctx = run_all.Ctx(tmp_path, False, 2, {}, {})
    ctx.data["ml100k"] = tmp_path / "ml100k"
    return ctx


def test_train_variants_compare_with_the_default_run_of_the_same_sitting(tmp_path):
    def runs(t1, t2):
        return json.dumps({"runs": [{"seconds_per_epoch": {"T1": t1, "T2": t2}}]})

    (tmp_path / "train.json").write_text(runs(6.0, 72.0))
    (tmp_path / "user.json").write_text(runs(6.1, 9.0))
    (tmp_path / "trim.json").write_text(runs(9.0, 70.0))
    ctx = run_all.Ctx(tmp_path, False, 2, {}, {"T2": 91.0})
    user = run_all.train_variant("user", ['multi_target_batching="user"'], "T2", "T2 user", "pair")
    rows = user.rows(ctx)
    assert [(r.value, r.reference, r.ref_kind) for r in rows] == [
        (9.0, 72.0, "same sitting"),
        (9.0, 91.0, "another day"),
    ]
    assert rows[0].ratio == pytest.approx(8.0)
    # the variant is the straightforward path: the default run is the measured one
    trim = run_all.train_variant(
        "trim", ["model.padding=1"], "T1", "T1", "untrimmed", variant_is_baseline=True
    )
    assert [(r.value, r.reference) for r in trim.rows(ctx)] == [(6.0, 9.0)]
    assert trim.available(ctx) in (None, "TrainConfig has no model.padding in this tree")
    assert run_all._has_train_key("model.channels") and run_all._has_train_key("t1.max_epochs")
    assert not run_all._has_train_key("model.no_such_key") and not run_all._has_train_key("t1.max_epochs.x")


def test_markdown_table_from_a_fixture_summary():
    rows = [
        run_all.Row("train", "T2 epoch (s)", 72.0, "s", 91.0, "another day", "official code"),
        run_all.Row("train", "T1 epoch (s)", 6.0, "s", 4.5, "same sitting", "conv floor", peak_rss_mb=812),
    ]
    md = run_all.render_markdown(_summary(rows))
    lines = md.splitlines()
    assert lines[0].startswith("Measured 2026-12-02 17:00 UTC (full run, 812 s in all) on AMD EPYC 7B13")
    assert (
        "family 25" in lines[0]
        and "avx2, fma" in lines[0]
        and "load average at start [0.5, 0.4, 0.3]" in lines[0]
    )
    table = [ln for ln in lines if ln.startswith("| ")]
    assert table[0] == "| benchmark | what | measured | reference | ratio | reference is | peak RSS |"
    assert (
        table[1] == "| train | T1 epoch (s) | 6.00 s | 4.50 s (conv floor) | 0.75x | same sitting | 812 MB |"
    )
    assert table[2] == "| train | T2 epoch (s) | 72.0 s | 91.0 s (official code) | 1.26x | another day | - |"
    assert "train-user-batching: skipped (no key)" in md
    assert "- `python bench/bench_embed.py` (12 s)" in md
    quick = run_all.render_markdown(_summary(rows, quick=True))
    assert "quick: tiny sizes, not comparable to a full run" in quick


def test_readme_block_is_replaced_and_the_rest_kept():
    block = run_all.render_markdown(_summary([run_all.Row("embed", "q/s", 3.0e5, "q/s")]))
    readme = f"# Title\n\nintro\n\n{run_all.README_BEGIN}\nold table\n{run_all.README_END}\n\n## Next\ntext\n"
    new = run_all.replace_readme_block(readme, block)
    assert new.startswith("# Title\n\nintro\n\n" + run_all.README_BEGIN + "\n\n")
    assert new.endswith("\n\n" + run_all.README_END + "\n\n## Next\ntext\n")
    assert "old table" not in new and "| embed | q/s | 300,000 q/s | - | - | - | - |" in new
    assert run_all.replace_readme_block(new, block) == new  # idempotent
    with pytest.raises(SystemExit, match="markers"):
        run_all.replace_readme_block("# no markers\n", block)


def test_readme_block_is_the_committed_summary():
    """README.md's benchmark block is what ``run_all.py --readme`` makes of bench/results/summary.json."""
    summary = json.loads((ROOT / "bench" / "results" / "summary.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert run_all.replace_readme_block(readme, run_all.render_markdown(summary)) == readme
