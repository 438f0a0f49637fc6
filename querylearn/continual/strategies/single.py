"""SinMo (ALGORITHMS.md 6.1): one model per task, trained from scratch on that task only.

R[i][j] for j < i is the task-j model's score (it never changes: BWT = 0); the diagonal gives the
single-model scores R̂ that FWT compares against.
"""

from __future__ import annotations

from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.strategies import STRATEGIES


@STRATEGIES.register("single")
class Single(ContinualStrategy):
    name = "single"
    masking = "none"
    separate_models = True

    def setup_model(self, prev, tasks, new_model):
        model = new_model()
        model.add_task(tasks[-1].name, tasks[-1].n_classes)
        return model
