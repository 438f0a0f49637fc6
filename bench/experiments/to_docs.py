"""Collect the acceptance runs of run_acceptance.sh for docs/experiments.md.

    python bench/experiments/to_docs.py WORK_DIR [--md OUT.md]

For every WORK_DIR/out/DATASET-EXPERIMENT/results.json: copies it to
``bench/results/experiments/DATASET-EXPERIMENT.json``, copies its figures to
``docs/img/experiments/DATASET-EXPERIMENT-FIGURE.png`` and writes the tables and figure links as
markdown (one section per experiment, one sub-section per dataset) to stdout or ``--md``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from querylearn.artifacts import read_json
from querylearn.experiments.render import markdown_table

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ("sampling", "noise", "order", "adapt", "init")
DATASETS = {"ml100k": "MovieLens-100K", "syn5k": "synthetic log, 5,000 users"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    results_dir = ROOT / "bench" / "results" / "experiments"
    img_dir = ROOT / "docs" / "img" / "experiments"
    results_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    md: list[str] = []
    for exp in EXPERIMENTS:
        md.append(f"### {exp}\n")
        for ds, label in DATASETS.items():
            folder = args.work / "out" / f"{ds}-{exp}"
            if not (folder / "results.json").is_file():
                md.append(f"#### {label}\n\nnot run.\n")
                continue
            res = read_json(folder / "results.json")
            shutil.copyfile(folder / "results.json", results_dir / f"{ds}-{exp}.json")
            n_runs = len(res["runs"])
            md.append(f"#### {label} ({n_runs} runs, seeds {', '.join(map(str, res['seeds']))})\n")
            for table in res["tables"]:
                md.append(f"{table['title']}\n")
                md.append(markdown_table(table["header"], table["rows"]) + "\n")
                if table.get("note"):
                    md.append(f"{table['note']}\n")
            for fig in res["figures"]:
                name = f"{ds}-{exp}-{fig['file']}"
                shutil.copyfile(folder / "figures" / fig["file"], img_dir / name)
                md.append(f"![{fig['title']} ({label})](img/experiments/{name})\n")
    text = "\n".join(md)
    if args.md:
        args.md.write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
