"""Sequential fine-tuning (docs/algorithms.md#finetune): one model, all parameters trained on every
task in turn, one head per task kept. No masks and no hooks: the lower bound that forgets."""

from __future__ import annotations

from querylearn.continual.protocol import ContinualStrategy
from querylearn.continual.strategies import STRATEGIES


@STRATEGIES.register("finetune")
class Finetune(ContinualStrategy):
    name = "finetune"
    masking = "none"
