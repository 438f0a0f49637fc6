"""Write and render a coldstart-eval report.

REPORT_DIR/
    report.json   kind "coldstart_report": cold_rule, counts, negatives, seed, candidates
                  (count, length, sha256), tie_rule, sources, config, and
                  methods[NAME] = {warm, cold, all: {n_users, hr@1, hr@5, hr@10, ndcg@10}, kind, seconds, ...}
    report.csv    one row per method and group: method, group, n_users, hr@1, hr@5, hr@10, ndcg@10
    config.toml   the resolved ColdstartConfig
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from querylearn.artifacts import atomic_write_bytes, check_manifest, read_json, write_json
from querylearn.config import dump_toml
from querylearn.recsys.evaluate import GROUPS, METRIC_NAMES

CSV_COLUMNS = ("method", "group", "n_users", *METRIC_NAMES)


def report_rows(report: dict) -> list[dict]:
    rows = []
    for name, entry in report["methods"].items():
        for group in GROUPS:
            g = entry[group]
            rows.append({"method": name, "group": group, **{k: g[k] for k in ("n_users", *METRIC_NAMES)}})
    return rows


def write_report(out_dir: str | Path, report: dict, config=None) -> Path:
    """Write report.json, report.csv (and config.toml when ``config`` is given) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report_rows(report):
        writer.writerow(
            {k: ("" if v is None else (f"{v:.6f}" if isinstance(v, float) else v)) for k, v in row.items()}
        )
    atomic_write_bytes(out / "report.csv", buf.getvalue().encode("utf-8"))
    if config is not None:
        atomic_write_bytes(out / "config.toml", dump_toml(config).encode("utf-8"))
    return out / "report.json"


def read_report(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    report = read_json(path)
    check_manifest(path, report, kind="coldstart_report", schema_version=1)
    return report


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def render_table(report: dict) -> Table:
    """A rich table: per method one row per group (warm, cold, all) with n, HR@1/5/10, NDCG@10."""
    c = report["counts"]
    table = Table(
        title=(
            f"coldstart-eval: {c['n_eval_users']} users ({c['n_warm']} warm, {c['n_cold']} cold), "
            f"1 + {report['negatives']} candidates, seed {report['seed']}"
        ),
        caption=escape(f"rule: {report['cold_rule']}"),
        caption_justify="left",
    )
    table.add_column("method", style="bold", overflow="fold")
    table.add_column("group")
    table.add_column("n", justify="right")
    for label in ("HR@1", "HR@5", "HR@10", "NDCG@10"):
        table.add_column(label, justify="right")
    table.add_column("s", justify="right")
    names = list(report["methods"])
    for k, name in enumerate(names):
        entry = report["methods"][name]
        for j, group in enumerate(GROUPS):
            g = entry[group]
            table.add_row(
                escape(name) if j == 0 else "",
                group,
                str(g["n_users"]),
                *[_fmt(g[m]) for m in METRIC_NAMES],
                f"{entry.get('seconds', 0.0):.1f}" if j == 0 else "",
                end_section=(j == len(GROUPS) - 1 and k < len(names) - 1),
            )
    return table
