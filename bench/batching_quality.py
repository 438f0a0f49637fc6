"""Quality of multi_target_batching "pair" vs "user" from bench_sequence.py run directories.

Reads ``RUNS_ROOT_<mode>/<strategy>-s<seed>/metrics.json`` (complete or still running: R grows by one
row per learnt task) and writes a JSON and a Markdown table: per mode and task, R(Tj, Tj) (right after
learning task j, every run that got that far) and R(T_last, Tj) (runs that learnt every task), mean ±
sample std and the number of seeds; and the training seconds per epoch of every task::

    python bench/batching_quality.py --runs pair=/work/scratch/ub/runs_pair user=/work/scratch/ub/runs_user \\
        --strategy teracon --seeds 0,1,2 --out bench/results/batching_quality_ml100k
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def cell(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f} ({len(values)})"


def summarise(root: Path, strategy: str, seeds: list[int]) -> dict:
    """{tasks, diagonal: [[R(Tj,Tj) per seed]], last: [[R(T_last,Tj) per complete seed]], seeds: {...}}"""
    tasks: list[str] = []
    per_seed, speed = {}, {}
    for seed in seeds:
        path = root / f"{strategy}-s{seed}" / "metrics.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text(encoding="utf-8"))
        tasks = m["tasks"]
        per_seed[seed] = m["R"]
        speed[seed] = m.get("seconds_per_epoch", [])
    diagonal = [[R[j][j] for R in per_seed.values() if len(R) > j] for j in range(len(tasks))]
    complete = [R for R in per_seed.values() if len(R) == len(tasks)]
    last = [[R[-1][j] for R in complete] for j in range(len(tasks))]
    seconds = [[v[j] for v in speed.values() if len(v) > j and v[j]] for j in range(len(tasks))]
    return {"tasks": tasks, "diagonal": diagonal, "last": last, "seconds_per_epoch": seconds,
            "R_per_seed": per_seed}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, help="MODE=RUNS_ROOT, one per batching mode")
    ap.add_argument("--strategy", default="teracon")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    pairs = (r.split("=", 1) for r in args.runs)
    modes = {mode: summarise(Path(root), args.strategy, seeds) for mode, root in pairs}
    tasks = next(iter(modes.values()))["tasks"]
    lines = [
        "| batching | quantity | " + " | ".join(tasks) + " |",
        "|---|---|" + "---|" * len(tasks),
    ]
    for mode, s in modes.items():
        lines.append(f"| {mode} | R(Tj,Tj) | " + " | ".join(cell(v) for v in s["diagonal"]) + " |")
        lines.append(f"| {mode} | R(T_last,Tj) | " + " | ".join(cell(v) for v in s["last"]) + " |")
        lines.append(f"| {mode} | s/epoch | " + " | ".join(cell(v, 1) for v in s["seconds_per_epoch"]) + " |")
    table = "\n".join(lines) + "\n\nmean ± sample std over seeds (number of seeds in brackets)\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(
        json.dumps({"strategy": args.strategy, "seeds": seeds, "modes": modes}, indent=2) + "\n",
        encoding="utf-8",
    )
    args.out.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
