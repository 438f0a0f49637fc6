"""Multi-task learning (DUPN-style on the NextItNet backbone, docs/algorithms.md#multitask): the
non-continual reference. After task i arrives, a fresh model is trained jointly on T1..Ti
(mini-batches of every task interleaved, loss Σ_i L_i with λ_i = 1), so every row of R is a complete
joint retraining."""

from __future__ import annotations

from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.strategies import STRATEGIES


@STRATEGIES.register("multitask")
class Multitask(ContinualStrategy):
    name = "multitask"
    masking = "none"

    def setup_model(self, prev, tasks, new_model):
        model = new_model()
        for task in tasks:
            model.add_task(task.name, task.n_classes)
        return model

    def train_tasks(self, seen):
        return list(seen)
