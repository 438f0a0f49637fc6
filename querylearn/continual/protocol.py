"""The ContinualStrategy hooks, the TrainContext they receive and the per-task data they train on.

The run (run.py) asks the strategy, per task at ``position`` with ``seen`` = the tasks so far::

    model = strategy.setup_model(prev_model, seen, new_model)   # grow or create
    for phase in range(strategy.phases(task)):                 # one fit each (fit.py)
        train on strategy.train_tasks(seen):
            strategy.before_task(ctx, task)
            for each batch:  loss = task loss + Σ strategy.extra_losses(ctx, batch, out)
                             backward; strategy.after_backward(ctx)
                             optimizer.step(); strategy.after_step(ctx)
            strategy.after_task(ctx, task)
    R[position][j] = evaluate(models[strategy.model_position(j, position)], task j)

The run knows no strategy by name: what is trained, how many phases, which model answers for a
task (and is exported for it) and whether the strategy's own diagonal is the SinMo reference all
come from these hooks and declared capabilities. Hooks return values (losses, models) instead of
mutating shared state; strategy tensors that must survive a checkpoint go through ``state_dict()``
/ ``load_state_dict()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from querylearn.continual.config import TrainConfig
from querylearn.models.user_encoder import EncoderOutput, UserEncoder


@dataclass
class TaskData:
    """One task's examples split by the dataset's split codes (all rows kept, stored order).

    ``users[split]`` [n] int64 row indices into the dataset's sequences; ``labels[split]`` [n] int64.
    For next_query the label is the sequence's last query (the evaluation target).
    """

    name: str
    kind: str
    metric: str
    n_classes: int
    users: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def n(self, split: str) -> int:
        return int(len(self.users[split]))


@dataclass
class Batch:
    """A training batch. ``ids`` [U, L] are the batch's distinct user sequences; ``inverse`` [B]
    maps each example to its row in ``ids``; ``labels`` [B] (None for next_query)."""

    task: str
    ids: torch.Tensor
    inverse: torch.Tensor
    labels: torch.Tensor | None


@dataclass
class TrainContext:
    """What a hook may read. ``s`` is the annealed mask scale of the current batch."""

    model: UserEncoder
    optimizer: torch.optim.Optimizer | None
    task: TaskData
    position: int
    config: TrainConfig
    device: torch.device
    generator: torch.Generator
    tasks: dict[str, TaskData] = field(default_factory=dict)
    phase: int = 0
    epoch: int = 0
    step: int = 0
    s: float = 1.0
    logger: Callable[[dict], None] = lambda record: None


class ContinualStrategy:
    """Base strategy: no hooks (= sequential fine-tuning). Subclasses override what they need.

    Class attributes: ``name``; ``masking`` ("relation" | "plain" | "none" | "conure", the model
    the strategy trains); ``reference_diagonal`` (True when the strategy trains each task alone from
    scratch, so R[i][i] is itself the single-model reference of FWT: SinMo).
    """

    name = "base"
    masking = "none"
    reference_diagonal = False

    def __init__(self, config: TrainConfig):
        self.config = config

    # ---- what the run trains -------------------------------------------------------------------
    def setup_model(
        self, prev: UserEncoder | None, tasks: list[TaskData], new_model: Callable[[], UserEncoder]
    ) -> UserEncoder:
        """Return the model that learns ``tasks[-1]`` (default: grow ``prev`` by one head)."""
        model = new_model() if prev is None else prev
        model.add_task(tasks[-1].name, tasks[-1].n_classes)
        return model

    def train_tasks(self, seen: list[TaskData]) -> list[TaskData]:
        """The tasks trained (jointly) when ``seen[-1]`` arrives (default: the new task only)."""
        return [seen[-1]]

    def phases(self, task: TaskData) -> int:
        """Training passes for ``task``, each a full fit with its own optimiser and early stopping."""
        return 1

    def model_position(self, j: int, position: int) -> int:
        """Sequence position of the model that answers for task ``j`` after task ``position`` was
        learnt (evaluation and export); default: the latest model answers for every task."""
        return position

    @property
    def has_task_masks(self) -> bool:
        """Whether the strategy's models gate channels with task masks (the task-relation figure)."""
        return self.masking in ("relation", "plain")

    # ---- training hooks ------------------------------------------------------------------------
    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        """Called before the first epoch of ``task`` (once per phase, ``ctx.phase``), before the
        optimiser is built from the parameters that require gradients."""

    def extra_losses(self, ctx: TrainContext, batch: Batch, out: EncoderOutput) -> dict[str, torch.Tensor]:
        """Named extra loss terms (already weighted) added to the task loss of this batch."""
        return {}

    def after_backward(self, ctx: TrainContext) -> None:
        """Called after backward, before the optimiser step (gradient surgery)."""

    def after_step(self, ctx: TrainContext) -> None:
        """Called after each optimiser step (e.g. clamping)."""

    def after_task(self, ctx: TrainContext, task: TaskData) -> None:
        """Called after the best epoch's weights are restored (once per phase); the task's
        checkpoint follows the last phase."""

    def epoch_summary(self) -> dict[str, Any]:
        """Extra fields for the epoch's log record (and reset of any per-epoch accumulators)."""
        return {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise ValueError(f"strategy '{self.name}' has no state, got keys {sorted(state)[:3]}")
