"""The typed coldstart-eval report, its files, and its one table rendered three ways.

REPORT_DIR/
    report.json   ``ColdstartReport.to_dict()``: kind "coldstart_report", schema_version 1, cold_rule,
                  counts, negatives, seed, candidates (count, length, sha256), tie_rule, sources, config,
                  and methods[NAME] = {warm, cold, all: {n_users, hr@1, hr@5, hr@10, ndcg@10}, kind, ...}
    report.csv    one row per method and group: method, group, n_users, hr@1, hr@5, hr@10, ndcg@10
    config.toml   the resolved ColdstartConfig
    ranks.npz     the per-user outcomes (for the report's bootstrap intervals): methods [M] str (table
                  order), ranks [M, N] int32 (0-based rank of each ranked user's held-out item), cold [N] bool

The table (one row per method and group) is built once, by ``table_rows``; ``render_csv``,
``render_markdown`` / ``text_rows`` (also used by ``querylearn report``) and ``render_table`` (rich,
for the terminal) only format those rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from querylearn.artifacts import atomic_write_bytes, check_manifest, write_json
from querylearn.config import dump_toml
from querylearn.recsys.evaluate import GROUPS, METRIC_NAMES

REPORT_KIND = "coldstart_report"
REPORT_SCHEMA_VERSION = 1
CSV_COLUMNS = ("method", "group", "n_users", *METRIC_NAMES)
TEXT_HEADER = ("method", "users", "n", "HR@1", "HR@5", "HR@10", "NDCG@10")


@dataclass
class NCFInfo:
    """How one NCF model of the report was built and trained."""

    model: str  # gmf | mlp | neumf
    variant: str  # id | init | concat | rep
    source: str | None  # origin of the user representation (None for the id variant)
    dim: int | None  # its width
    best_epoch: int
    valid_hr10: list[float] = field(default_factory=list)  # validation HR@10 per epoch
    train_loss: list[float] = field(default_factory=list)  # mean training loss per epoch

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.variant,
            "source": self.source,
            "dim": self.dim,
            "best_epoch": self.best_epoch,
            "valid_hr@10": list(self.valid_hr10),
            "train_loss": list(self.train_loss),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NCFInfo:
        return cls(
            d["model"],
            d["variant"],
            d["source"],
            d["dim"],
            d["best_epoch"],
            list(d["valid_hr@10"]),
            list(d["train_loss"]),
        )


@dataclass
class MethodResult:
    """One method's metrics per group and how it was obtained.

    groups: ``warm`` / ``cold`` / ``all`` -> {n_users, hr@1, hr@5, hr@10, ndcg@10} (None for an empty group).
    kind: ``baseline`` | ``ncf`` | ``random`` (NCF on a random representation).
    """

    groups: dict[str, dict[str, Any]]
    kind: str
    seconds: float
    tied_targets: int  # rows where a negative scored exactly like the held-out item
    ncf: NCFInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {g: dict(self.groups[g]) for g in GROUPS}
        out["kind"] = self.kind
        if self.ncf is not None:
            out.update(self.ncf.to_dict())
        out["seconds"] = self.seconds
        out["tied_targets"] = self.tied_targets
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MethodResult:
        ncf = NCFInfo.from_dict(d) if "model" in d else None
        return cls({g: dict(d[g]) for g in GROUPS}, d["kind"], d["seconds"], d["tied_targets"], ncf)


@dataclass
class CandidateLists:
    """The shared test candidate lists: count, length (1 + negatives), SHA-256; validation list count."""

    n_lists: int
    list_length: int
    sha256: str
    n_valid_lists: int


@dataclass
class SourceInfo:
    """One user representation source: name (method suffix), origin (file or run), width."""

    name: str
    origin: str
    dim: int


@dataclass
class ItemInit:
    """The item text table that initialised the item side of NCF."""

    origin: str | None
    dim: int


@dataclass
class ColdstartReport:
    """Everything ``coldstart-eval`` measured (``report.json``; field names are a CLI contract)."""

    querylearn_version: str
    dataset: str | None
    cold_rule: str
    cold_min_train: int
    cold_fraction: float
    counts: dict[str, int]  # interactions.Split.counts()
    negatives: int
    seed: int
    candidates: CandidateLists
    tie_rule: str
    sources: list[SourceInfo]
    item_init: ItemInit | None
    config: dict[str, Any]  # the resolved ColdstartConfig as a dict
    methods: dict[str, MethodResult]  # in table order
    seconds: float
    # per-user outcomes, written to ranks.npz (not report.json): method -> ranks [N]; cold [N] bool
    user_ranks: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    user_cold: Any = field(default=None, repr=False, compare=False)
    kind: str = REPORT_KIND
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The report.json object (key order as written since schema version 1)."""
        return {
            "kind": self.kind,
            "schema_version": self.schema_version,
            "querylearn_version": self.querylearn_version,
            "dataset": self.dataset,
            "cold_rule": self.cold_rule,
            "cold_min_train": self.cold_min_train,
            "cold_fraction": self.cold_fraction,
            "counts": dict(self.counts),
            "negatives": self.negatives,
            "seed": self.seed,
            "candidates": vars(self.candidates).copy(),
            "tie_rule": self.tie_rule,
            "sources": [vars(s).copy() for s in self.sources],
            "item_init": None if self.item_init is None else vars(self.item_init).copy(),
            "config": self.config,
            "methods": {name: m.to_dict() for name, m in self.methods.items()},
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str | Path = "report.json") -> ColdstartReport:
        """Parse a report.json object; ArtifactError when ``kind`` / ``schema_version`` differ."""
        check_manifest(where, d, kind=REPORT_KIND, schema_version=REPORT_SCHEMA_VERSION)
        return cls(
            querylearn_version=d["querylearn_version"],
            dataset=d["dataset"],
            cold_rule=d["cold_rule"],
            cold_min_train=d["cold_min_train"],
            cold_fraction=d["cold_fraction"],
            counts=dict(d["counts"]),
            negatives=d["negatives"],
            seed=d["seed"],
            candidates=CandidateLists(**d["candidates"]),
            tie_rule=d["tie_rule"],
            sources=[SourceInfo(**s) for s in d["sources"]],
            item_init=None if d["item_init"] is None else ItemInit(**d["item_init"]),
            config=d["config"],
            methods={name: MethodResult.from_dict(m) for name, m in d["methods"].items()},
            seconds=d["seconds"],
        )


# ---------------------------------------------------------------- the table: one row builder


@dataclass(frozen=True)
class TableRow:
    """One method and group of the table; metric values None for an empty group."""

    method: str
    group: str  # warm | cold | all
    n_users: int
    metrics: tuple[float | None, ...]  # in METRIC_NAMES order: hr@1, hr@5, hr@10, ndcg@10
    seconds: float  # the method's fit + score time


def _as_report(report: ColdstartReport | dict[str, Any]) -> ColdstartReport:
    return report if isinstance(report, ColdstartReport) else ColdstartReport.from_dict(report)


def table_rows(report: ColdstartReport | dict[str, Any]) -> list[TableRow]:
    """Per method (report order) one row per group (warm, cold, all)."""
    report = _as_report(report)
    return [
        TableRow(
            name,
            group,
            int(m.groups[group]["n_users"]),
            tuple(m.groups[group][k] for k in METRIC_NAMES),
            m.seconds,
        )
        for name, m in report.methods.items()
        for group in GROUPS
    ]


def render_csv(report: ColdstartReport | dict[str, Any]) -> str:
    """report.csv: header ``CSV_COLUMNS``, values with 6 decimals, empty for None."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in table_rows(report):
        writer.writerow(
            [row.method, row.group, row.n_users, *("" if v is None else f"{v:.6f}" for v in row.metrics)]
        )
    return buf.getvalue()


def text_rows(
    report: ColdstartReport | dict[str, Any], missing: str = ""
) -> tuple[list[str], list[list[str]]]:
    """Header and string cells (4 decimals, ``missing`` for None) for markdown or a plain table."""
    rows = [
        [r.method, r.group, str(r.n_users), *(missing if v is None else f"{v:.4f}" for v in r.metrics)]
        for r in table_rows(report)
    ]
    return list(TEXT_HEADER), rows


def render_markdown(report: ColdstartReport | dict[str, Any]) -> str:
    """A markdown table (as in ``querylearn report``'s report.md), no trailing newline."""
    header, rows = text_rows(report)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def render_table(report: ColdstartReport | dict[str, Any]) -> Table:
    """A rich table: per method one row per group (warm, cold, all) with n, HR@1/5/10, NDCG@10, seconds."""
    report = _as_report(report)
    c = report.counts
    table = Table(
        title=(
            f"coldstart-eval: {c['n_eval_users']} users ({c['n_warm']} warm, {c['n_cold']} cold), "
            f"1 + {report.negatives} candidates, seed {report.seed}"
        ),
        caption=escape(f"rule: {report.cold_rule}"),
        caption_justify="left",
    )
    table.add_column("method", style="bold", overflow="fold")
    table.add_column("group")
    table.add_column("n", justify="right")
    for label in ("HR@1", "HR@5", "HR@10", "NDCG@10"):
        table.add_column(label, justify="right")
    table.add_column("s", justify="right")
    rows = table_rows(report)
    for k, row in enumerate(rows):
        first = k % len(GROUPS) == 0
        last_of_method = k % len(GROUPS) == len(GROUPS) - 1
        table.add_row(
            escape(row.method) if first else "",
            row.group,
            str(row.n_users),
            *["-" if v is None else f"{v:.4f}" for v in row.metrics],
            f"{row.seconds:.1f}" if first else "",
            end_section=last_of_method and k < len(rows) - 1,
        )
    return table


def write_report(out_dir: str | Path, report: ColdstartReport, config=None) -> Path:
    """Write report.json, report.csv (and config.toml when ``config`` is given) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "report.json", report.to_dict())
    atomic_write_bytes(out / "report.csv", render_csv(report).encode("utf-8"))
    if config is not None:
        atomic_write_bytes(out / "config.toml", dump_toml(config).encode("utf-8"))
    if report.user_ranks:
        import numpy as np

        from querylearn.artifacts import write_npz

        names = list(report.user_ranks)
        write_npz(out / "ranks.npz", methods=np.array(names),
                  ranks=np.stack([np.asarray(report.user_ranks[n], dtype=np.int32) for n in names]),
                  cold=np.asarray(report.user_cold, dtype=bool))
    return out / "report.json"
