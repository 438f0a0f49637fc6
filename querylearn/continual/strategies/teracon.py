"""TERACON (docs/algorithms.md#teracon): relation-aware task masks + knowledge retention with
pseudo-labels from a frozen teacher and relation-aware user sampling.

Per batch of task n (n >= 2), for every past task j (Eq. 9, 10, 14-16, 18):
  S_j = random subset of the batch's users, |S_j| = max(min_kr_samples, floor(U · rho_j))
  ŷ_j  = teacher head_j(teacher(X[S_j]; m^j_teacher(s_t)))      (no gradient)
  ŷ'_j = head_j(model(X[S_j]; m^j(s_t)))                          (relation-aware masks)
  s_t = s_b (teacher_s = "annealed", parity) or smax (teacher_s = "smax") for both passes
  L = CE_new + α Σ_j (rho_j / Σ_k rho_k) MSE(ŷ'_j, ŷ_j) [+ c · mean(m^new(s_b))]
  rho_j <- max(min_rho, 1 - mean_l σ(6 cos(m^j_teacher, m^new)))  for the next batch (all j in one
           op; teacher_s = "smax" computes the teacher pass, the student's past-task passes and
           both masks of rho at smax, so teacher and student see the same masks)
The bracketed mask-sparsity term (``teracon.mask_reg`` = c, HAT-style, as the original code's T1)
is added at T1 only (``mask_reg_tasks = "first"``) or at every task (``"all"``).
For the next_query past task the last item is dropped (X[:, :L-1]) so its head predicts the final
behaviour as in T1 training. ``U`` is the number of distinct users in the batch (multi-target
examples of the same user share one sequence). Task embeddings are clamped after every step.

``teracon.kr_logits = "sampled"`` matches only ``kr_classes`` random classes of a large past head.

Visible mechanism: every epoch's log record carries each task's mask sparsity at smax (fraction
of channels below 0.5, per layer), its std across channels, the mask cosine matrix between tasks,
rho per past task (mean over the epoch's batches) and the users retained per past task and batch.

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
from querylearn.models.masking import mask_channel_std, mask_cosine, mask_sparsity
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
        self._kr_sizes: list[int] = []
        self._model: UserEncoder | None = None

    def setup_model(self, prev, tasks, new_model):
        if prev is not None and prev.n_tasks > 0 and self.cfg.alpha > 0:
            # docs/algorithms.md#model-growth: the frozen previous model is the teacher of every past task
            self.teacher = copy.deepcopy(prev).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        else:
            self.teacher = None
        model = super().setup_model(prev, tasks, new_model)
        if self.cfg.emb_init == "symmetric" and model.has_task_masks:
            bank = model.masks
            half = (bank.emb_high - bank.emb_low) / 2.0
            with torch.no_grad():  # the new task's row: U(-a, a) instead of U(low, high)
                bank.task_embedding[-1].uniform_(-half, half)
        if self.cfg.relation_init == "identity" and model.masking == "relation" and model.n_tasks > 1:
            bank = (
                model.masks
            )  # own-task input (position 0 of Q) weight 1, bias 0 (docs/algorithms.md#relation-aware-masks)
            rows = range(model.n_tasks) if bank.relation_layers == "reinit" else [model.n_tasks - 1]
            with torch.no_grad():
                for t in rows:
                    bank.rel_weight[t, :, 0] = 1.0
                    bank.rel_bias[t] = 0.0
        return model

    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        self._model = ctx.model
        if self.cfg.freeze != "none":  # the optimiser is built after this hook, from trainable parameters
            for p in frozen_after_t1(ctx.model, self.cfg.freeze):
                p.requires_grad_(ctx.model.task_index(task.name) == 0)
        n_past = ctx.model.n_tasks - 1
        init = {"all": 1.0, "fixed": self.cfg.rho_fixed}.get(self.cfg.rho_mode, self.cfg.rho_init)
        self.rho = torch.full((n_past,), init, device=ctx.device)  # not reset per epoch (4.10)

    def extra_losses(self, ctx: TrainContext, batch: Batch, out: EncoderOutput) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        teacher = self.teacher
        if teacher is not None and self.cfg.alpha > 0 and self.rho is not None and len(self.rho) > 0:
            losses["retention"] = self._retention(ctx, batch, out, teacher)
        cfg = self.cfg
        if cfg.mask_reg > 0 and out.masks is not None:
            if cfg.mask_reg_tasks == "all" or ctx.model.task_index(ctx.task.name) == 0:
                losses["mask_reg"] = cfg.mask_reg * out.masks.mean()  # HAT-style sparsity, [O] T1
        return losses

    def _retention(
        self, ctx: TrainContext, batch: Batch, out: EncoderOutput, teacher: UserEncoder
    ) -> torch.Tensor:
        """α · L_KR of this batch (Eq. 16, 18); updates rho for the next batch (Eq. 14-15)."""
        model = ctx.model
        past = teacher.task_names
        at_smax = self.cfg.teacher_s == "smax"
        s_past = model.smax if at_smax else ctx.s  # teacher and student past-task passes
        rho_used = self.rho.clamp_min(self.cfg.min_rho) if self.cfg.min_rho > 0 else self.rho
        n_rows = batch.ids.shape[0]
        self.last_rho = rho_used.tolist()  # one host transfer per batch for the subset sizes
        sizes = retention.sample_sizes(self.last_rho, n_rows, self.cfg.min_kr_samples)
        self._rho_sum = (
            [a + b for a, b in zip(self._rho_sum, self.last_rho, strict=True)]
            if self._rho_sum
            else list(self.last_rho)
        )
        self._kr_sizes = (
            [a + b for a, b in zip(self._kr_sizes, sizes, strict=True)] if self._kr_sizes else list(sizes)
        )
        self._rho_batches += 1
        self._kr_rows += sum(sizes)
        with torch.no_grad():
            teacher_masks = teacher.all_masks(s_past)  # [P, M, C]
        student_masks = model.all_masks(s_past)  # [N, M, C], relation-aware for every task
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
            if at_smax:  # both sides at smax
                new_masks = student_masks[model.task_index(ctx.task.name)]
            self.rho = retention.rho_from_masks(
                teacher_masks, new_masks, self.cfg.rho_sharpness, self.cfg.cos_eps
            )
        return self.cfg.alpha * loss

    def _student_logits(self, model: UserEncoder, x, masks, name: str, classes) -> torch.Tensor:
        """head_j(model(X[S_j]; m^j)) [S_j, C_j]. With ``teracon.checkpoint_students`` the forward
        keeps no activations and is recomputed in backward, one past task at a time, and that recompute
        keeps only each block's input (blocks recomputed once more in backward), so peak memory holds
        one block of one student pass instead of one full pass per past task (same values and
        gradients)."""

        def student(x: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
            hidden = model.encode(x, masks, checkpoint_blocks=self.cfg.checkpoint_students)
            return model.head_logits(hidden, name, classes, ids=x)

        if self.cfg.checkpoint_students and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(student, x, masks, use_reentrant=False)
        return student(x, masks)

    def after_step(self, ctx: TrainContext) -> None:
        ctx.model.clamp_task_embeddings_(self.config.task_emb_clamp)

    def epoch_summary(self) -> dict:
        """The mechanism at the end of the epoch: every task's masks at smax (sparsity per layer, std
        across channels, cosine matrix), and over the epoch's batches the mean sampling rate and the
        mean number of users retained per past task and batch, and the retained rows in total."""
        out: dict = {}
        model = self._model
        if model is not None and model.has_task_masks:
            with torch.no_grad():
                masks = model.all_masks(model.smax).float()  # [N, M, C]
            names = list(model.task_names)
            off, std = mask_sparsity(masks).tolist(), mask_channel_std(masks).mean(dim=-1).tolist()
            out["mask_off"] = dict(zip(names, off, strict=True))  # per layer
            out["mask_std"] = dict(zip(names, std, strict=True))  # mean over layers
            out["mask_cosine"] = {"tasks": names, "matrix": mask_cosine(masks).tolist()}
        if self._rho_batches:
            past = self.teacher.task_names if self.teacher is not None else []
            n = self._rho_batches
            out["rho_mean"] = dict(zip(past, (r / n for r in self._rho_sum), strict=False))
            out["retained_per_batch"] = dict(zip(past, (k / n for k in self._kr_sizes), strict=False))
            out["retained_rows"] = self._kr_rows
        self._rho_sum, self._kr_sizes, self._rho_batches, self._kr_rows = [], [], 0, 0
        return out

    def after_task(self, ctx: TrainContext, task: TaskData) -> None:
        self.teacher = None  # the next task snapshots the model it starts from
        self._model = None


def frozen_after_t1(model: UserEncoder, what: str) -> list[torch.nn.Parameter]:
    """The parameters ``teracon.freeze = what`` stops training after T1: "embedding" = the item
    embedding and the input projection; "shared" = those and every LayerNorm; "none" = nothing."""
    if what == "none":
        return []
    modules = model.shared_modules()  # [item embedding, (input projection), LayerNorms...]
    if what == "embedding":
        modules = modules[: 2 if model.input_proj is not None else 1]
    return [p for m in modules for p in m.parameters()]


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
