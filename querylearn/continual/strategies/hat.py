"""HAT (Serrà et al., ICML 2018; docs/algorithms.md#hat) on the NextItNet backbone.

- plain masks a^t = σ(s e^t) per task (annealed s, evaluation at smax), embeddings clamped to ±6;
- after each task: a^{<t+1} = max(a^{<t}, a^t at smax) (recomputed from the frozen past embeddings);
- while learning task t >= 2: conv weight gradients are scaled by 1 - min(a_out^{<t}, a_in^{<t})
  (conv1 reads the unmasked residual stream, a_in ≡ 1, so its factor is 1 - a_out^{<t}); conv bias
  gradients by 1 - a_out^{<t}; the item embedding, input projection and LayerNorms are frozen
  after T1; past task embeddings get no gradient (and are restored after every step);
- embedding-gradient compensation g_e ← g_e (smax/s)(cosh(clamp(s e, ±50)) + 1)/(cosh(e) + 1);
- attention regulariser c Σ a^t (1 - a^{<t}) / Σ (1 - a^{<t}) added to the loss.
HAT only approximately protects old tasks on a residual network: report its measured BWT.
"""

from __future__ import annotations

import torch

from querylearn.continual.protocol import Batch, ContinualStrategy, TaskData, TrainContext
from querylearn.continual.strategies import STRATEGIES
from querylearn.models.user_encoder import EncoderOutput


def hat_regulariser(masks: torch.Tensor, cumulative: torch.Tensor) -> torch.Tensor:
    """Σ a^t (1 - a^{<t}) / Σ (1 - a^{<t}); masks, cumulative [M, C] -> scalar."""
    free = 1.0 - cumulative
    return (masks * free).sum() / free.sum().clamp_min(1e-12)


def compensation_factor(emb: torch.Tensor, s: float, smax: float, clamp: float = 50.0) -> torch.Tensor:
    """(smax/s)(cosh(clamp(s e, ±clamp)) + 1)/(cosh(e) + 1), element-wise."""
    return (smax / s) * (torch.cosh(torch.clamp(s * emb, -clamp, clamp)) + 1.0) / (torch.cosh(emb) + 1.0)


@STRATEGIES.register("hat")
class Hat(ContinualStrategy):
    name = "hat"
    masking = "plain"

    def __init__(self, config):
        super().__init__(config)
        self.cfg = config.hat
        self.cumulative: torch.Tensor | None = None  # a^{<t} [M, C]
        self.position = 0
        self._past_emb: torch.Tensor | None = None

    def before_task(self, ctx: TrainContext, task: TaskData) -> None:
        model = ctx.model
        self.position = model.task_index(task.name)
        emb = model.masks.task_embedding.detach()
        if self.position == 0:
            self.cumulative = torch.zeros_like(emb[0])
        else:
            self.cumulative = torch.sigmoid(model.smax * emb[: self.position]).amax(dim=0)  # [M, C]
        self._past_emb = emb[: self.position].clone()
        for module in model.shared_modules():
            for p in module.parameters():
                p.requires_grad_(self.position == 0)

    def extra_losses(self, ctx: TrainContext, batch: Batch, out: EncoderOutput) -> dict[str, torch.Tensor]:
        if self.cfg.reg == 0 or out.masks is None:
            return {}
        return {"hat_reg": self.cfg.reg * hat_regulariser(out.masks, self.cumulative)}

    @torch.no_grad()
    def after_backward(self, ctx: TrainContext) -> None:
        model = ctx.model
        cum = self.cumulative
        if self.position > 0:
            convs = model.conv_layers()  # layer 2k = conv1 of block k (reads the residual stream)
            for k in range(len(convs) // 2):
                a1, a2 = cum[2 * k], cum[2 * k + 1]  # [C]
                c1, c2 = convs[2 * k], convs[2 * k + 1]
                if c1.weight.grad is not None:
                    c1.weight.grad.mul_((1.0 - a1)[:, None, None])  # a_in ≡ 1 (residual stream)
                if c2.weight.grad is not None:
                    c2.weight.grad.mul_((1.0 - torch.minimum(a2[:, None], a1[None, :]))[:, :, None])
                if c1.bias.grad is not None:
                    c1.bias.grad.mul_(1.0 - a1)
                if c2.bias.grad is not None:
                    c2.bias.grad.mul_(1.0 - a2)
        grad = model.masks.task_embedding.grad
        if grad is not None:
            grad[: self.position] = 0.0
            if self.cfg.compensation:
                e = model.masks.task_embedding[self.position]
                grad[self.position].mul_(compensation_factor(e, ctx.s, model.smax, self.cfg.clamp_s))

    @torch.no_grad()
    def after_step(self, ctx: TrainContext) -> None:
        model = ctx.model
        model.clamp_task_embeddings_(self.config.task_emb_clamp)
        if self.position > 0:
            model.masks.task_embedding[: self.position] = self._past_emb
