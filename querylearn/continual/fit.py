"""The per-task fit: epochs of shuffled batches, annealed s, strategy hooks, the Adam optimiser and
early stopping on the validation split (the best epoch's weights are restored at the end)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from querylearn.continual import distributed
from querylearn.continual.buckets import epoch_batches
from querylearn.continual.config import PhaseConfig, TrainConfig
from querylearn.continual.data import task_batches
from querylearn.continual.evaluation import evaluate, selection_value
from querylearn.continual.losses import label_loss, multi_positive_loss, next_query_loss
from querylearn.continual.protocol import Batch, ContinualStrategy, TaskData, TrainContext
from querylearn.data.vocab import PAD_ID
from querylearn.models.masking import anneal_s
from querylearn.models.user_encoder import UserEncoder


@dataclass
class FitResult:
    epochs: int
    best_epoch: int
    best_valid: float | None
    seconds_per_epoch: float
    skipped_steps: int
    history: list[dict] = field(default_factory=list)

    @staticmethod
    def combine(results: list[FitResult]) -> FitResult:
        """One summary of a task's phases: epochs and skipped steps summed, the last phase's best."""
        epochs = sum(r.epochs for r in results)
        return FitResult(
            epochs=epochs,
            best_epoch=results[-1].best_epoch,
            best_valid=results[-1].best_valid,
            seconds_per_epoch=sum(r.seconds_per_epoch * r.epochs for r in results) / max(epochs, 1),
            skipped_steps=sum(r.skipped_steps for r in results),
        )


class Progress(Protocol):
    """What ``fit`` reports while it trains (the CLI draws it: ``querylearn.cli.progress``)."""

    def start(self, description: str, total: int) -> Any: ...

    def advance(self, handle: Any, loss: float | None = None) -> None: ...

    def stop(self, handle: Any) -> None: ...

    def epoch_end(self, label: str, record: dict) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Reports nothing."""

    def start(self, description: str, total: int) -> None:
        return None

    def advance(self, handle, loss: float | None = None) -> None:
        pass

    def stop(self, handle) -> None:
        pass

    def epoch_end(self, label: str, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def fused_adam_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused Adam needs floating-point parameters on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in params)
    )


def make_optimizer(params: list[torch.Tensor], phase: PhaseConfig) -> torch.optim.Adam:
    """Adam(lr, betas (0.9, 0.999), eps 1e-8, weight_decay) of one task (fresh per task, 4.8)."""
    return torch.optim.Adam(
        params,
        lr=phase.lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=phase.weight_decay,
        fused=fused_adam_ok(params),  # same update, one kernel (about 4x faster on CPU)
    )


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _batch_loss(model, t: TaskData, idx: np.ndarray, sequences: torch.Tensor, ctx: TrainContext):
    """(Batch, task loss, encoder output) of one training batch of task ``t``."""
    device = sequences.device
    users = t.users["train"][idx]
    if t.kind == "next_query":
        ids = sequences[torch.as_tensor(users, device=device)]  # [B, L]
        batch = Batch(t.name, ids, torch.arange(len(users), device=device), None)
        loss, out = next_query_loss(model, ids, t.name, ctx.s, ctx.config, ctx.generator)
        return batch, loss, out
    uniq, inv = np.unique(users, return_inverse=True)
    batch = Batch(
        t.name,
        sequences[torch.as_tensor(uniq, device=device)],  # [U, L]
        torch.as_tensor(inv, device=device),
        torch.as_tensor(t.labels["train"][idx], device=device),
    )
    per_user = ctx.config.multi_target_batching == "user" and t.kind == "multi_target"
    loss, out = (multi_positive_loss if per_user else label_loss)(model, batch, ctx.s)
    return batch, loss, out


@dataclass
class _EpochStats:
    loss_sum: torch.Tensor
    extra_sums: dict[str, torch.Tensor]
    n_steps: int
    seconds: float


class _Best:
    """Early-stopping state: the best epoch so far, its weights and strategy state."""

    def __init__(self, model: UserEncoder, strategy: ContinualStrategy):
        self.value: float | None = None
        self.epoch = 0
        self.bad_epochs = 0
        self.state = copy.deepcopy(model.state_dict())
        self.strategy_state = copy.deepcopy(strategy.state_dict())

    def improves(self, epoch: int, value: float | None) -> bool:
        """Whether an epoch with validation ``value`` is the new best (the first epoch always is)."""
        return bool(
            self.value is None
            and epoch == 1
            or (value is not None and (self.value is None or value > self.value))
        )

    def record(self, epoch: int, value: float | None, improved: bool, model: UserEncoder,
               strategy: ContinualStrategy) -> None:
        """Keep the epoch's weights and strategy state when it ``improved``, else count a bad epoch."""
        if improved:
            self.value, self.epoch, self.bad_epochs = value, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
            self.strategy_state = copy.deepcopy(strategy.state_dict())
        else:
            self.bad_epochs += 1

    def restore(self, model: UserEncoder, strategy: ContinualStrategy) -> None:
        model.load_state_dict(self.state)
        strategy.load_state_dict(self.strategy_state)


def _train_epoch(
    model: UserEncoder,
    strategy: ContinualStrategy,
    schedule: list[tuple[TaskData, float, np.ndarray]],
    batch_size: dict[str, int],
    sequences: torch.Tensor,
    ctx: TrainContext,
    progress: Progress,
    handle: Any,
) -> tuple[_EpochStats, int]:
    """One pass over ``schedule`` (task, batch index b of Eq. 19, rows); returns the stats and skipped
    steps."""
    device = sequences.device
    config = ctx.config
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    extra_sums: dict[str, torch.Tensor] = {}
    n_steps = skipped = 0
    for t, b, idx in schedule:
        ctx.s = anneal_s(b, t.n("train") / batch_size[t.name], model.smax)
        local, share = distributed.shard(idx)  # this rank's share of the batch (all of it in one process)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            batch, loss, out = _batch_loss(model, t, local, sequences, ctx)
            extras = strategy.extra_losses(ctx, batch, out)
            total = loss + sum(extras.values()) if extras else loss
        ctx.optimizer.zero_grad(set_to_none=True)
        total_value = float(total.detach())
        if not distributed.all_finite(total_value):
            skipped += 1
            progress.advance(handle, None)
            continue
        total.backward()
        distributed.average_gradients(ctx.optimizer, share)  # DDP's mean over the global batch
        strategy.after_backward(ctx)
        ctx.optimizer.step()
        strategy.after_step(ctx)
        ctx.step += 1
        n_steps += 1
        loss_sum += loss.detach()
        for k, v in extras.items():
            extra_sums[k] = extra_sums.get(k, torch.zeros((), device=device)) + v.detach()
        progress.advance(handle, total_value)
    return _EpochStats(loss_sum, extra_sums, n_steps, time.perf_counter() - t0), skipped


def sequence_lengths(sequences, chunk: int = 65536) -> np.ndarray:
    """Real (non-padding) positions per user: sequences [N, L] (a tensor or memory-mapped
    ``MappedSequences``) -> int64 [N], read ``chunk`` rows at a time."""
    n = len(sequences)
    out = np.empty(n, dtype=np.int64)
    for i in range(0, n, chunk):
        rows = torch.arange(i, min(i + chunk, n))
        out[i : i + len(rows)] = (sequences[rows] != PAD_ID).sum(1).cpu().numpy()
    return out


def fit(
    model: UserEncoder,
    strategy: ContinualStrategy,
    train_tasks: list[TaskData],
    *,
    all_tasks: dict[str, TaskData],
    sequences: torch.Tensor,
    config: TrainConfig,
    position: int,
    seed: int,
    batch_sizes: dict[str, int] | None = None,
    log: Callable[[dict], None] = lambda record: None,
    progress: Progress | None = None,
    label: str = "",
    train_phase: int = 0,
) -> FitResult:
    """Train ``model`` on ``train_tasks`` (one task, or several jointly).

    Per epoch: shuffled batches of every train task (interleaved when several), s annealed per
    batch up to ``model.smax`` (Eq. 19), task loss + strategy.extra_losses, a non-finite total skips
    the step (fixes B6), then validation on every train task at s = smax; the best epoch's weights
    (by the selection metric, mean over the train tasks) are restored at the end. ``batch_sizes``:
    per train task (default: the batch size of ``position``'s phase for every task).
    """
    progress = progress or NullProgress()
    phase: PhaseConfig = config.phase(position)
    generator = seed_everything(seed)
    rng = np.random.default_rng(seed)
    task = train_tasks[-1]
    ctx = TrainContext(
        model=model,
        optimizer=None,
        task=task,
        position=position,
        config=config,
        device=sequences.device,
        generator=generator,
        tasks=all_tasks,
        logger=log,
        phase=train_phase,
    )
    strategy.before_task(ctx, task)  # may freeze parameters: the optimiser comes after
    ctx.optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], phase)
    batch_size = {t.name: (batch_sizes or {}).get(t.name, phase.batch_size) for t in train_tasks}
    best = _Best(model, strategy)
    train_seconds: list[float] = []
    history: list[dict] = []
    skipped = 0
    seq_lengths = sequence_lengths(sequences) if config.length_buckets else None
    for epoch in range(1, phase.max_epochs + 1):
        ctx.epoch = epoch
        model.train()
        schedule = [
            (t, b, idx)
            for t in train_tasks
            for b, idx in (
                task_batches(t, batch_size[t.name], rng, config.drop_last, "user")
                if config.multi_target_batching == "user" and t.kind == "multi_target"
                else enumerate(
                    epoch_batches(t, batch_size[t.name], rng, config.drop_last, seq_lengths)
                )
            )
        ]
        if len(train_tasks) > 1:
            schedule = [schedule[i] for i in rng.permutation(len(schedule))]
        handle = progress.start(f"{label} epoch {epoch}/{phase.max_epochs}", len(schedule))
        stats, epoch_skipped = _train_epoch(
            model, strategy, schedule, batch_size, sequences, ctx, progress, handle
        )
        skipped += epoch_skipped
        progress.stop(handle)
        train_seconds.append(stats.seconds)
        valid = {
            t.name: evaluate(model, t, "valid", sequences, config=config, batch_size=phase.eval_batch_size)
            for t in train_tasks
        }
        values = [selection_value(valid[t.name], t, config.selection_metric) for t in train_tasks]
        value = None if any(v is None for v in values) else float(np.mean(values))
        improved = best.improves(epoch, value)
        n = max(stats.n_steps, 1)
        record = {
            "task": task.name,
            "phase": train_phase,
            "epoch": epoch,
            "train_loss": float(stats.loss_sum) / n,
            **{f"train_{k}": float(v) / n for k, v in stats.extra_sums.items()},
            "steps": stats.n_steps,
            "skipped_steps": skipped,
            "seconds": stats.seconds,
            "valid": valid if len(train_tasks) > 1 else valid[task.name],
            "selection": value,
            "improved": improved,
            **strategy.epoch_summary(),
        }
        history.append(record)
        log(record)
        progress.epoch_end(label, record)
        best.record(epoch, value, improved, model, strategy)  # after epoch_summary, as the hooks expect
        if best.bad_epochs >= phase.patience:
            break
    best.restore(model, strategy)
    strategy.after_task(ctx, task)
    return FitResult(
        epochs=len(train_seconds),
        best_epoch=best.epoch,
        best_valid=best.value,
        seconds_per_epoch=float(np.mean(train_seconds)) if train_seconds else 0.0,
        skipped_steps=skipped,
        history=history,
    )
