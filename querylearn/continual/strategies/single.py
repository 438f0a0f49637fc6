"""SinMo (docs/algorithms.md#sinmo): one model per task, trained from scratch on that task only.

R[i][j] for j < i is the task-j model's score (it never changes: BWT = 0); the diagonal gives the
single-model scores R̂ that FWT compares against. The same strategy trains the SinMo reference of
every other strategy (``with_single``), so there is one SinMo path.
"""

from __future__ import annotations

from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.strategies import STRATEGIES


@STRATEGIES.register("single")
class Single(ContinualStrategy):
    name = "single"
    masking = "none"
    reference_diagonal = True

    def setup_model(self, prev, tasks, new_model):
        model = new_model()
        model.add_task(tasks[-1].name, tasks[-1].n_classes)
        return model

    def model_position(self, j: int, position: int) -> int:
        return j  # task j's own model
