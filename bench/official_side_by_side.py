"""querylearn next to the official TERACON code on the same files (issue 11): JSON + Markdown table.

The official numbers are those of the official code (Sein-Kim/TERACON, five patches to run on a CPU,
deterministic) on ``teracon-ml100k`` (MovieLens-100K in the official task-file format), as recorded
in the project's reference note ``shared/anchors/official-teracon-ml100k.md``; they are copied into
``OFFICIAL`` below. querylearn's side is one or more ``bench/bench_sequence.py`` outputs (one per
configuration, e.g. the official parity switches and querylearn's defaults), run on the same files
prepared with ``querylearn prepare teracon --split example --seed 0`` (the official 80/5/15
example-level split, seed 0, the same sizes per task).

Usage (the commands of docs/benchmarks-train.md, "Side by side with the official code")::

    python bench/official_side_by_side.py --config parity=/work/scratch/official_ml100k_parity.json \\
        --config defaults=/work/scratch/official_ml100k_defaults.json \\
        --load-log /work/scratch/uptime.log --out bench/results/official_ml100k

Acceptance (issue 11): on every task, querylearn's mean + one sample std (over seeds) reaches the
official number, for R(Tj,Tj) (right after learning task j) and R(T5,Tj) (after the last task).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_sequence import mean_std  # noqa: E402

# shared/anchors/official-teracon-ml100k.md: test split, metric at the best-validation epoch
OFFICIAL = {
    "source": "official TERACON code (Sein-Kim/TERACON, revised), seed 0, CPU 2 vCPU, torch 2.13.0; "
    "shared/anchors/official-teracon-ml100k.md",
    "tasks": ["T1", "T2", "T3", "T4", "T5"],
    "metric": ["mrr@5", "mrr@5", "mrr@5", "accuracy", "accuracy"],
    "R_diag": [0.0077, 0.0125, 0.0294, 0.7239, 0.2239],
    "R_after_T3": [0.0139, 0.0124, 0.0297, None, None],
    "R_last": [0.0087, 0.0122, 0.0297, 0.6567, 0.2239],
    "majority": [None, None, None, 0.7185, 0.2963],
    "seconds_per_epoch": [3, 91, 54, 4, 5],
    "batches_per_epoch": ["22 x 32", "26 x 1024", "16 x 1024", "22 x 32", "22 x 32"],
    "epochs": [10, 6, 9, 6, 6],
    # secondary test metrics right after learning the task (None: not in the reference note)
    "secondary_diag": {
        "T1": {"hr@5": 0.0224, "ndcg@5": 0.0113, "mrr@20": 0.0205, "hr@20": 0.1866},
        "T2": {"hr@5": 0.0267, "ndcg@5": 0.0160, "mrr@20": None, "hr@20": 0.1025},
        "T3": {"hr@5": 0.0596, "ndcg@5": 0.0368, "mrr@20": None, "hr@20": 0.1751},
    },
}

LOAD = re.compile(r"load average:\s*([\d.]+),\s*([\d.]+),\s*([\d.]+)")


def load_averages(path: Path | None) -> dict | None:
    """1-minute load averages of an ``uptime`` log (one line per sample): count, median, min, max."""
    if path is None or not path.is_file():
        return None
    vals = [float(m.group(1)) for m in map(LOAD.search, path.read_text().splitlines()) if m]
    if not vals:
        return None
    return {"samples": len(vals), "median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def _at(values: list, *index: int):
    """``values[i][j]...``, None where a run has not reached that task yet (a partial metrics.json)."""
    for i in index:
        if values is None or i >= len(values):
            return None
        values = values[i]
    return values


def runs_from_dirs(dirs: list[Path]) -> dict:
    """A bench_sequence-like dict from run directories' metrics.json (finished or not)."""
    runs = []
    for d in dirs:
        m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        wall = d / "bench_wall.json"
        w = json.loads(wall.read_text(encoding="utf-8"))["wall_seconds"] if wall.is_file() else None
        runs.append({"strategy": m["strategy"], "seed": m["seed"], "metrics": m, "wall_seconds": w})
    return {"runs": runs, "overrides": {"run_dirs": [str(d) for d in dirs]}}


def config_summary(bench: dict) -> dict:
    """Per task, over the TERACON runs of one bench_sequence output (or of run directories, finished
    or not): R(Tj,Tj), R(T3,Tj), R(T5,Tj) as mean/std/n and per seed (None where a run has not
    reached the task); seconds per epoch and epochs per task."""
    runs = sorted((r for r in bench["runs"] if r["strategy"] == "teracon"), key=lambda r: r["seed"])
    T = len(OFFICIAL["tasks"])
    out: dict = {"seeds": [r["seed"] for r in runs], "overrides": bench["overrides"]}
    R = [r["metrics"]["R"] for r in runs]
    rows = {
        "R_diag": [[_at(m, j, j) for m in R] for j in range(T)],
        "R_after_T3": [[_at(m, 2, j) if j <= 2 else None for m in R] for j in range(T)],
        "R_last": [[_at(m, T - 1, j) for m in R] for j in range(T)],
    }
    for key, per_task in rows.items():
        out[key] = [
            dict(zip(("mean", "std", "n"), mean_std(v), strict=True)) | {"per_seed": v} for v in per_task
        ]
    spe = [[_at(r["metrics"]["seconds_per_epoch"], j) for r in runs] for j in range(T)]
    out["seconds_per_epoch"] = [mean_std(v)[0] for v in spe]
    out["epochs"] = [[_at(r["metrics"]["epochs"], j) for r in runs] for j in range(T)]
    out["best_epoch"] = [[_at(r["metrics"]["best_epoch"], j) for r in runs] for j in range(T)]
    out["wall_seconds"] = [r.get("wall_seconds") for r in runs]
    tasks = OFFICIAL["tasks"]

    def detail(j: int, k: str) -> dict:
        values = [(_at(r["metrics"]["R_detail"], j, j) or {}).get(k) for r in runs]
        return dict(zip(("mean", "std", "n"), mean_std(values), strict=True))

    out["secondary_diag"] = {
        t: {k: detail(j, k) for k in OFFICIAL["secondary_diag"][t]}
        for j, t in enumerate(tasks)
        if t in OFFICIAL["secondary_diag"] and all("R_detail" in r["metrics"] for r in runs)
    }
    out["acceptance"] = {
        key: [
            None if ms["mean"] is None or off is None else bool(ms["mean"] + ms["std"] >= off)
            for ms, off in zip(out[key], OFFICIAL[key], strict=True)
        ]
        for key in ("R_diag", "R_last")
    }
    return out


def _cell(ms: dict) -> str:
    if ms["mean"] is None:
        return "–"
    if ms["n"] < 2:
        return f"{ms['mean']:.4f} (1 seed)"
    return f"{ms['mean']:.4f} ± {ms['std']:.4f}"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else " ✓" if ok else " ✗"


def markdown(result: dict) -> str:
    tasks, metric = OFFICIAL["tasks"], OFFICIAL["metric"]
    lines = [
        "### Official TERACON code vs querylearn, teracon-ml100k (MovieLens-100K, official task files)",
        "",
        "Test split, metric at the best-validation epoch; querylearn mean ± sample std over seeds. "
        "✓ = mean + std ≥ the official number (issue 11's acceptance), ✗ = not.",
    ]
    for name, c in result["configs"].items():
        lines += [
            "",
            f"**{name}** ({len(c['seeds'])} seed(s): {', '.join(map(str, c['seeds']))})",
            "",
            "| task (metric) | official R(Tj,Tj) | querylearn R(Tj,Tj) | official R(T3,Tj) "
            "| querylearn R(T3,Tj) | official R(T5,Tj) | querylearn R(T5,Tj) | majority class |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for j, (t, m) in enumerate(zip(tasks, metric, strict=True)):
            off3 = OFFICIAL["R_after_T3"][j]
            maj = OFFICIAL["majority"][j]
            ok = c["acceptance"]
            lines.append(
                f"| {t} ({m}) | {OFFICIAL['R_diag'][j]:.4f} | {_cell(c['R_diag'][j])}{_mark(ok['R_diag'][j])}"
                f" | {'–' if off3 is None else f'{off3:.4f}'} | {_cell(c['R_after_T3'][j])} "
                f"| {OFFICIAL['R_last'][j]:.4f} | {_cell(c['R_last'][j])}{_mark(ok['R_last'][j])} "
                f"| {'–' if maj is None else f'{maj:.4f}'} |"
            )
        lines += ["", "Per seed, R(Tj,Tj) / R(T5,Tj):", ""]
        for j, t in enumerate(tasks):
            d = ", ".join("–" if v is None else f"{v:.4f}" for v in c["R_diag"][j]["per_seed"])
            last = ", ".join("–" if v is None else f"{v:.4f}" for v in c["R_last"][j]["per_seed"])
            lines.append(f"- {t}: {d} / {last}; epochs {c['epochs'][j]}, best epoch {c['best_epoch'][j]}")
        if c["secondary_diag"]:
            lines += ["", "Secondary test metrics right after learning the task (official / querylearn):", ""]
            for t, per in c["secondary_diag"].items():
                off = OFFICIAL["secondary_diag"][t]
                cells = [
                    f"{k} {'–' if off[k] is None else f'{off[k]:.4f}'} / {_cell(ms)}" for k, ms in per.items()
                ]
                lines.append(f"- {t}: " + "; ".join(cells))
    load = result.get("load")
    lines += [
        "",
        "Training seconds per epoch (training loop only, validation excluded). The official column was "
        "measured on another day on an idle machine of the same kind; querylearn's on this shared "
        "machine, one run at a time, 1 torch thread, under `nice`"
        + (
            f", 1-minute load average median {load['median']:.1f} (min {load['min']:.1f}, max "
            f"{load['max']:.1f}, {load['samples']} `uptime` samples) on 2 cores"
            if load
            else ""
        )
        + ": not a speed comparison.",
        "",
        "| task | batches/epoch (official) | official s/epoch | official epochs | "
        + " | ".join(f"{n} s/epoch | {n} epochs" for n in result["configs"])
        + " |",
        "|" + "---|" * (4 + 2 * len(result["configs"])),
    ]
    for j, t in enumerate(tasks):
        cells = [t, OFFICIAL["batches_per_epoch"][j]]
        cells += [str(OFFICIAL["seconds_per_epoch"][j]), str(OFFICIAL["epochs"][j])]
        for c in result["configs"].values():
            spe = c["seconds_per_epoch"][j]
            epochs = ", ".join("–" if e is None else str(e) for e in c["epochs"][j])
            cells += ["–" if spe is None else f"{spe:.1f}", epochs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[], help="NAME=bench_sequence JSON (repeatable)")
    ap.add_argument(
        "--runs", action="append", default=[], help="NAME=DIR[,DIR...]: runs' metrics.json, finished or not"
    )
    ap.add_argument("--load-log", type=Path, help="uptime samples taken during the runs")
    ap.add_argument("--out", type=Path, required=True, help="output stem: writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    configs = {}
    for item in args.config:
        name, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--config {item!r}: expected NAME=PATH")
        configs[name] = config_summary(json.loads(Path(path).read_text(encoding="utf-8")))
    for item in args.runs:
        name, sep, paths = item.partition("=")
        if not sep:
            ap.error(f"--runs {item!r}: expected NAME=DIR[,DIR...]")
        configs[name] = config_summary(runs_from_dirs([Path(p) for p in paths.split(",")]))
    if not configs:
        ap.error("give at least one --config or --runs")
    result = {
        "kind": "official-side-by-side",
        "schema_version": 1,
        "official": OFFICIAL,
        "configs": configs,
        "load": load_averages(args.load_log),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
