"""Continual-learning strategies on the same backbone, looked up by name.

``STRATEGIES.get(name)(config)`` builds one; a miss lists the available names.
"""

from __future__ import annotations

from querylearn.registry import Registry

STRATEGIES = Registry("strategy")

# register the implementations (import order = nothing else)
from querylearn.continual.strategies import conure, finetune, hat, multitask, single, teracon  # noqa: E402,F401


def build_strategy(name: str, config):
    """Strategy instance for ``name`` (e.g. "teracon", "teracon-plain", "finetune")."""
    return STRATEGIES.get(name)(config)
