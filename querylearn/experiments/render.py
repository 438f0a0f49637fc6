"""``results.md`` and the figures of an experiment, from its ``results.json`` alone (no torch).

``results.json`` carries ``tables`` ({title, note?, header, rows}: strings, already formatted) and
``figures`` ({file, kind: "bars" | "curves", title, ...}: values as {"mean", "std"}), so
``querylearn report OUT`` re-renders an experiment without reading its runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from querylearn.artifacts import atomic_write_bytes, read_json, write_json
from querylearn.errors import ArtifactError
from querylearn.experiments import RESULTS_KIND


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table; a ``|`` inside a cell (``mean |diff|``) is escaped as ``\\|``."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(row) for row in rows)])


def _value(ms) -> tuple[float, float]:
    if not ms or ms.get("mean") is None:
        return float("nan"), 0.0
    return float(ms["mean"]), float(ms.get("std") or 0.0)


def plot_figure(spec: dict, path: Path) -> Path:
    """Draw one figure spec (grouped bars with std error bars, or mean curves with std bands)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["font.family"] = ["DejaVu Sans"]
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    series = spec["series"]
    if spec["kind"] == "bars":
        groups = spec["groups"]
        width = 0.8 / max(len(series), 1)
        for k, (name, values) in enumerate(series.items()):
            means, stds = zip(*(_value(v) for v in values), strict=True) if values else ((), ())
            xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, means, width, yerr=stds, capsize=2, label=name)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.axhline(0.0, color="grey", linewidth=0.6)
    elif spec["kind"] == "curves":
        for name, points in series.items():
            xs = list(range(1, len(points) + 1))
            means, stds = zip(*(_value(v) for v in points), strict=True) if points else ((), ())
            ax.plot(xs, means, marker="o", label=name)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                alpha=0.2,
            )
        ax.set_xlabel(spec.get("xlabel", "epoch"))
        ax.xaxis.get_major_locator().set_params(integer=True)
    else:
        raise ArtifactError(f"figure {spec.get('file')}: unknown kind {spec['kind']!r}")
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.set_title(spec["title"])
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(results: dict, figure_dir: str = "figures") -> str:
    """The experiment's markdown: claim, settings, tables, figures and the runs."""
    ds = results["dataset"]
    md = [
        f"# Experiment `{results['experiment']}`",
        "",
        f"Claim checked: {results['claim']}",
        "",
        f"Dataset: `{ds['source']}`{' (**synthetic**)' if ds['synthetic'] else ''}, {ds['n_users']:,} users "
        f"(`{results['data']}`); seeds {', '.join(map(str, results['seeds']))}; "
        f"strategies {', '.join(results['strategies'])}"
        f"{'; --quick (tiny settings: the numbers say nothing)' if results['quick'] else ''}.",
        "",
    ]
    sets = results.get("settings", {}).get("sets") or {}
    if sets:
        md += ["Overrides: " + ", ".join(f"`{k}={v}`" for k, v in sets.items()) + ".", ""]
    for table in results["tables"]:
        md += [f"## {table['title']}", "", markdown_table(table["header"], table["rows"]), ""]
        if table.get("note"):
            md += [table["note"], ""]
    for spec in results["figures"]:
        md += [f"![{spec['title']}]({figure_dir}/{spec['file']})", ""]
    md += [
        "## Runs",
        "",
        markdown_table(
            ["run", "status", "tasks"],
            [[f"`{r['dir']}`", r["status"], " → ".join(r["tasks"])] for r in results["runs"]],
        ),
        "",
    ]
    return "\n".join(md) + "\n"


def write_results(out: str | Path, results: dict) -> Path:
    """``OUT/results.json``, ``OUT/results.md`` and ``OUT/figures/*.png``; returns results.md."""
    out = Path(out)
    write_json(out / "results.json", results)
    return render(results, out, "results.md")


def render(results: dict, out: Path, md_name: str) -> Path:
    for spec in results["figures"]:
        plot_figure(spec, out / "figures" / spec["file"])
    path = out / md_name
    atomic_write_bytes(path, markdown(results).encode("utf-8"))
    return path


def is_experiment(root: str | Path) -> bool:
    path = Path(root) / "results.json"
    return path.is_file() and read_json(path).get("kind") == RESULTS_KIND


def print_tables(results: dict, console) -> None:
    """Rich tables on a terminal, plain complete ones otherwise (as ``querylearn report`` does)."""
    from querylearn.report import plain_table, rich_table

    if console.quiet:
        return
    for table in results["tables"]:
        if console.is_terminal:
            console.print(rich_table(table["title"], table["header"], table["rows"]))
        else:
            console.file.write(plain_table(table["title"], table["header"], table["rows"]) + "\n\n")
    console.file.flush()


def build_experiment_report(
    root: str | Path, out: str | Path | None = None, *, console=None, as_json: bool = False
) -> Path:
    """``querylearn report OUT`` on an experiment: ``report.md`` (= results.md) and the figures;
    prints the tables (or, with ``as_json``, results.json with the report's path) to ``console``."""
    root = Path(root)
    results = read_json(root / "results.json")
    if results.get("kind") != RESULTS_KIND:
        raise ArtifactError(
            f"{root}/results.json: expected kind '{RESULTS_KIND}', found {results.get('kind')!r}"
        )
    path = render(results, Path(out) if out else root, "report.md")
    if console is not None and as_json and not console.quiet:
        doc = {"kind": "querylearn-report", "report": str(path), "experiment": results}
        console.file.write(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        console.file.flush()
    elif console is not None:
        print_tables(results, console)
    return path
