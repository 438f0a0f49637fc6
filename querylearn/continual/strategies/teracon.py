"""TERACON (ALGORITHMS.md section 4): relation-aware task masks + knowledge retention with
pseudo-labels from a frozen teacher and relation-aware user sampling.

Per batch of task n (n >= 2), for every past task j (Eq. 9, 10, 14-16, 18 per [R]):
  S_j = random subset of the batch's users, |S_j| = max(min_kr_samples, floor(U · rho_j))
  ŷ_j  = teacher head_j(teacher(X[S_j]; m^j_teacher(s_t)))      (no gradient)
  ŷ'_j = head_j(model(X[S_j]; m^j(s_b)))                          (relation-aware masks)
  L = CE_new + α Σ_j (rho_j / Σ_k rho_k) MSE(ŷ'_j, ŷ_j)
  rho_j <- 1 - mean_l σ(6 cos(m^j_teacher, m^new))  for the next batch (all j in one op;
           teacher_s = "smax" computes the teacher outputs and both masks of rho at smax)
For the next_query past task the last item is dropped (X[:, :L-1]) so its head predicts the final
behaviour as in T1 training. ``U`` is the number of distinct users in the batch (multi-target
examples of the same user share one sequence). Task embeddings are clamped after every step.

``teracon.kr_logits = "sampled"`` matches only ``kr_classes`` random classes of a large past head.

Ablations (registered names): ``teracon-noretention`` (α = 0), ``teracon-rho1`` (rho ≡ 1: all
users, equal weights), ``teracon-plain`` (plain σ(s e) masks instead of relation-aware ones).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.utils.checkpoint

from querylearn.continual import retention
from querylearn.continual.config import TrainConfig
from querylearn.continual.protocol import Batch, ContinualStrategy, TaskData, TrainContext
from querylearn.continual.strategies import STRATEGIES
from querylearn.models.user_encoder import EncoderOutput, UserEncoder


@STRATEGIES.register("teracon")
class Teracon(ContinualStrategy):
    name = "teracon"

    def __init__(self, config: TrainConfig):
        super().__init__(config)
        self.cfg = config.teracon
        self.masking = self.cfg.masks
        self.teacher: UserEncoder | None = None
        self.rho: torch.Tensor | None = None  # [P] rates used by the next batch
        self.last_rho: list[float] = []
        self._rho_sum: list[float] = []
        self._rho_batches = 0
        self._kr_rows = 0

    def setup_model(self, prev, tasks, new_model):
        if prev is not None and prev.n_tasks > 0 and self.cfg.alpha > 0:
            # section 4.8: the frozen previous model is the teacher of every past task
            self.teacher = copy.deepcopy(prev).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        else:
            self.teacher = None
        return super().setup_model(prev, tasks, new_model)

    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        n_past = ctx.model.n_tasks - 1
        init = 1.0 if self.cfg.rho_mode == "all" else self.cfg.rho_init
        self.rho = torch.full((n_past,), init, device=ctx.device)  # not reset per epoch (4.10)

    def extra_losses(self, ctx: TrainContext, batch: Batch, out: EncoderOutput) -> dict[str, torch.Tensor]:
        teacher = self.teacher
        if teacher is None or self.cfg.alpha == 0 or self.rho is None or len(self.rho) == 0:
            return {}
        model = ctx.model
        past = teacher.task_names
        s_teacher = ctx.s if self.cfg.teacher_s == "annealed" else model.smax
        rho_used = self.rho
        n_rows = batch.ids.shape[0]
        self.last_rho = rho_used.tolist()  # one host transfer per batch for the subset sizes
        sizes = retention.sample_sizes(self.last_rho, n_rows, self.cfg.min_kr_samples)
        self._rho_sum = (
            [a + b for a, b in zip(self._rho_sum, self.last_rho, strict=True)]
            if self._rho_sum
            else list(self.last_rho)
        )
        self._rho_batches += 1
        self._kr_rows += sum(sizes)
        with torch.no_grad():
            teacher_masks = teacher.all_masks(s_teacher)  # [P, M, C]
        student_masks = model.all_masks(ctx.s)  # [N, M, C], relation-aware for every task
        student_logits, teacher_logits = [], []
        for j, name in enumerate(past):
            subset = torch.randperm(n_rows, generator=ctx.generator, device="cpu")[: sizes[j]].to(
                batch.ids.device
            )
            x = batch.ids[subset]  # [S_j, L]
            if ctx.tasks[name].kind == "next_query":
                x = x[:, :-1]  # the T1 head predicts the final behaviour (4.9 step 2)
            classes = None
            n_classes = model.heads.n_classes(name)
            if self.cfg.kr_logits == "sampled" and n_classes > self.cfg.kr_classes:
                classes = torch.randperm(n_classes, generator=ctx.generator)[: self.cfg.kr_classes].to(
                    batch.ids.device
                )
            with torch.no_grad():
                t_masks = None if teacher_masks is None else teacher_masks[j]
                teacher_logits.append(teacher.head_logits(teacher.encode(x, t_masks), name, classes, ids=x))
            s_masks = None if student_masks is None else student_masks[model.task_index(name)]
            student_logits.append(self._student_logits(model, x, s_masks, name, classes))
        weights = retention.retention_weights(rho_used)
        loss = retention.retention_loss(student_logits, teacher_logits, weights)
        if self.cfg.rho_mode == "relation" and teacher_masks is not None and out.masks is not None:
            new_masks = out.masks  # the new task's masks at s_b (parity)
            if self.cfg.teacher_s == "smax":  # both sides at smax
                with torch.no_grad():
                    new_masks = model.all_masks(model.smax)[model.task_index(ctx.task.name)]
            self.rho = retention.rho_from_masks(
                teacher_masks, new_masks, self.cfg.rho_sharpness, self.cfg.cos_eps
            )
        return {"retention": self.cfg.alpha * loss}

    def _student_logits(self, model: UserEncoder, x, masks, name: str, classes) -> torch.Tensor:
        """head_j(model(X[S_j]; m^j)) [S_j, C_j]. With ``teracon.checkpoint_students`` the forward
        keeps no activations and is recomputed in backward, one past task at a time, so peak
        memory holds one student pass instead of one per past task (same values and gradients)."""

        def student(x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
            return model.head_logits(model.encode(x, masks), name, classes, ids=x)

        if self.cfg.checkpoint_students and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(student, x, masks, use_reentrant=False)
        return student(x, masks)

    def after_step(self, ctx: TrainContext) -> None:
        ctx.model.clamp_task_embeddings_(self.config.task_emb_clamp)

    def epoch_summary(self) -> dict:
        """Mean sampling rate per past task over the epoch's batches and the retained rows."""
        if not self._rho_batches:
            return {}
        past = self.teacher.task_names if self.teacher is not None else []
        out = {
            "rho_mean": dict(zip(past, (r / self._rho_batches for r in self._rho_sum), strict=False)),
            "retained_rows": self._kr_rows,
        }
        self._rho_sum, self._rho_batches, self._kr_rows = [], 0, 0
        return out

    def after_task(self, ctx: TrainContext, task: TaskData) -> None:
        self.teacher = None  # the next task snapshots the model it starts from


def _variant(name: str, **changes):
    @STRATEGIES.register(name)
    class _Variant(Teracon):
        def __init__(self, config: TrainConfig):
            config = dataclasses.replace(config, teracon=dataclasses.replace(config.teracon, **changes))
            super().__init__(config)
            self.name = name

    _Variant.__name__ = _Variant.__qualname__ = "Teracon_" + name.split("-")[1]
    return _Variant


TeraconNoRetention = _variant("teracon-noretention", alpha=0.0)
TeraconRhoOne = _variant("teracon-rho1", rho_mode="all")
TeraconPlain = _variant("teracon-plain", masks="plain")
