"""Task kinds and the task-sequence TOML of the ``files`` source.

Example ``tasks.toml`` (paths relative to the TOML file)::

    [[task]]
    name = "T1"
    kind = "next_query"          # self-supervised over the query sequence; no label file

    [[task]]
    name = "T2"
    kind = "multi_target"        # several (user_id, label) rows per user; metric mrr@5
    labels = "wish_category.csv"

    [[task]]
    name = "T6"
    kind = "classify"            # one label per user; metric accuracy
    labels = "age.csv"
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from querylearn.errors import ConfigError

KINDS = ("next_query", "multi_target", "classify")
DEFAULT_METRIC = {"next_query": "mrr@5", "multi_target": "mrr@5", "classify": "accuracy"}
METRICS = ("mrr@5", "hr@5", "ndcg@5", "mrr@20", "hr@20", "ndcg@20", "accuracy")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass(frozen=True)
class TaskSpec:
    """One task of a sequence. ``labels`` is the label file (None for ``next_query``)."""

    name: str
    kind: str
    metric: str
    labels: Path | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"task name {self.name!r}: use letters, digits, '_' or '-' only")
        if self.kind not in KINDS:
            raise ConfigError(f"task '{self.name}': kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.metric not in METRICS:
            raise ConfigError(
                f"task '{self.name}': metric {self.metric!r} is not one of {', '.join(METRICS)}"
            )


def load_task_sequence(path: str | Path) -> list[TaskSpec]:
    """Read a tasks TOML (``[[task]]`` tables with name, kind, optional metric, labels)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: tasks file not found")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - {"task"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key '{unknown[0]}' (expected [[task]] tables)")
    entries = data.get("task", [])
    if isinstance(entries, dict):
        raise ConfigError(
            f"{path}: [task] is a single table; write [[task]] (double brackets) before each task, in order"
        )
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(
            f"{path}: 'task' must be a list of [[task]] tables; write [[task]] before each task"
        )
    if not entries:
        raise ConfigError(f"{path}: no [[task]] tables; list the tasks in order")
    specs: list[TaskSpec] = []
    for i, entry in enumerate(entries, 1):
        bad = sorted(set(entry) - {"name", "kind", "metric", "labels"})
        if bad:
            raise ConfigError(
                f"{path}: task #{i}: unknown key '{bad[0]}' (valid: name, kind, metric, labels)"
            )
        for key in ("name", "kind"):
            if key not in entry:
                raise ConfigError(f"{path}: task #{i}: missing '{key}'")
        for key in ("name", "kind", "metric", "labels"):
            if key in entry and not isinstance(entry[key], str):
                raise ConfigError(
                    f"{path}: task #{i}: {key} = {entry[key]!r} must be a quoted string, "
                    f'e.g. {key} = "{entry[key]}"'
                )
        kind = entry["kind"]
        labels = entry.get("labels")
        if kind == "next_query" and labels is not None:
            raise ConfigError(f"{path}: task '{entry['name']}': next_query takes no labels file")
        if kind in KINDS and kind != "next_query" and labels is None:
            raise ConfigError(f"{path}: task '{entry['name']}': kind {kind} needs labels = \"FILE\"")
        try:
            spec = TaskSpec(
                name=entry["name"],
                kind=kind,
                metric=entry.get("metric", DEFAULT_METRIC.get(kind, "accuracy")),
                labels=(path.parent / labels) if labels is not None else None,
            )
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        specs.append(spec)
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: task name '{dup[0]}' appears twice")
    nq = [s for s in specs if s.kind == "next_query"]
    if len(nq) > 1:
        raise ConfigError(f"{path}: only one next_query task is allowed")
    if nq and specs[0].kind != "next_query":
        raise ConfigError(f"{path}: the next_query task must come first")
    return specs
