"""The CLI's fixed choices as enums: typer validates them, lists them in ``--help`` and completes them.

Built from the library's own tuples where importing them is cheap; the ones that live beside torch
code are written here and ``tests/test_cli_behaviour.py`` checks they equal the library's.
Commands receive plain strings: :func:`querylearn.cli.app.with_verbosity` turns enum members back
into their values before a command runs.
"""

from __future__ import annotations

from enum import Enum

from querylearn.data.sources import SOURCES as PREPARE_SOURCES
from querylearn.data.splits import SPLIT_MODES
from querylearn.embeddings.base import POOLINGS, SEGMENTS
from querylearn.embeddings.base import SOURCES as EMBED_SOURCES

EXPORT_USERS = ("all", "test")  # querylearn.export.USERS
NCF_MODELS = ("gmf", "mlp", "neumf")  # querylearn.recsys.ncf.MODELS
NCF_VARIANTS = ("id", "init", "concat", "rep")  # querylearn.recsys.ncf.VARIANTS
COLDSTART_BASELINES = ("most-popular", "als", "bpr", "random")  # querylearn.recsys.coldstart.BASELINES
STRATEGY_NAMES = (  # querylearn.continual.strategies.STRATEGIES, default first
    "teracon",
    "finetune",
    "single",
    "multitask",
    "hat",
    "conure",
    "teracon-noretention",
    "teracon-rho1",
    "teracon-plain",
)
DEMO_PRESETS = ("small", "full", "tiny")  # querylearn.cli.demo.PRESETS


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, {v: v for v in values}, type=str)  # members are their string values


PrepareSource = _choices("PrepareSource", PREPARE_SOURCES)
SplitMode = _choices("SplitMode", SPLIT_MODES)
EmbedSource = _choices("EmbedSource", EMBED_SOURCES)
Pooling = _choices("Pooling", POOLINGS)
Segment = _choices("Segment", SEGMENTS)
ExportUsers = _choices("ExportUsers", EXPORT_USERS)
NCFModel = _choices("NCFModel", NCF_MODELS)
NCFVariant = _choices("NCFVariant", NCF_VARIANTS)
Baseline = _choices("Baseline", COLDSTART_BASELINES)
Strategy = _choices("Strategy", STRATEGY_NAMES)
DemoPreset = _choices("DemoPreset", DEMO_PRESETS)


def plain(value):
    """An enum member (or a list of them) as its string value(s); anything else unchanged."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
