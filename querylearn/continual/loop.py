"""The train-sequence entry points, re-exported from the modules that hold them:

- :mod:`querylearn.continual.data`: task data, task order, batching, devices, input vectors;
- :mod:`querylearn.continual.losses`: the task losses;
- :mod:`querylearn.continual.evaluation`: ranking evaluation of a split;
- :mod:`querylearn.continual.fit`: one task's fit (optimiser, annealed s, hooks, early stopping);
- :mod:`querylearn.continual.run`: the run (R after every task, checkpoints, resume, add-task);
- :mod:`querylearn.continual.results`: the R matrix and ``metrics.json``.
"""

from __future__ import annotations

from querylearn.continual.data import load_input_vectors, resolve_device, resolve_task_order, task_data
from querylearn.continual.evaluation import evaluate
from querylearn.continual.fit import FitResult, fit
from querylearn.continual.losses import label_loss, next_query_loss
from querylearn.continual.run import RUN_KIND, RUN_SCHEMA_VERSION, train_sequence

__all__ = [
    "RUN_KIND",
    "RUN_SCHEMA_VERSION",
    "FitResult",
    "evaluate",
    "fit",
    "label_loss",
    "load_input_vectors",
    "next_query_loss",
    "resolve_device",
    "resolve_task_order",
    "task_data",
    "train_sequence",
]
