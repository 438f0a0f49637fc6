"""The seed study's experiments as commands (``querylearn experiment NAME``; docs/experiments.md).

Each experiment is one module with ``CLAIM``, ``DEFAULT_STRATEGIES``, ``plan(ctx, done)`` (the
train-sequence runs it needs, possibly depending on finished ones) and ``summarise(ctx, done)``
(tables, figure specs and numbers for ``results.json``). :mod:`runner` runs the plan (resumable,
optionally in parallel processes) and :mod:`render` writes ``results.md`` and the figures.
"""

from __future__ import annotations

EXPERIMENTS = ("order", "noise", "sampling", "adapt", "init")
RESULTS_KIND = "experiment-results"
