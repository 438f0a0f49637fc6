"""The one training loop: ``fit`` (epochs, annealed s, hooks, early stopping) and ``train_sequence``
(tasks in order, R matrix after every task, checkpoints, resume, add-task, metrics.json).

Task losses (ALGORITHMS.md 3.4-3.5):
- next_query: input x[:, :L-1], targets x[:, 1:], softmax CE over every position (padding targets
  kept unless ``next_query.ignore_padding``; optional sampled softmax over the batch's targets plus
  uniform negatives). Evaluation: input x[:, :L-1], target = the last query, readout at the last
  position, full ranking over the vocabulary (padding excluded unless configured otherwise).
- multi_target / classify: input the full sequence, readout at the last position, softmax CE over
  the task's labels; multi-target users contribute one example per target.
Evaluation iterates over every row of the split in stored order (never dropped, never shuffled),
with s = smax and the task's own mask and head.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from querylearn import __version__
from querylearn.artifacts import atomic_write_bytes, read_json, read_npy, write_json
from querylearn.config import dump_toml, load_config, to_dict
from querylearn.continual.checkpoint import load_checkpoint, save_checkpoint
from querylearn.continual.config import PhaseConfig, TrainConfig
from querylearn.continual.protocol import Batch, ContinualStrategy, TaskData, TrainContext
from querylearn.continual.strategies import build_strategy
from querylearn.data.dataset import Dataset, load_dataset
from querylearn.data.splits import SPLIT_NAMES
from querylearn.data.vocab import PAD_ID
from querylearn.errors import ArtifactError, ConfigError, DataError, QuerylearnError
from querylearn.metrics import bwt, fwt, ranking_metrics
from querylearn.models.masking import anneal_s
from querylearn.models.user_encoder import EncoderOutput, UserEncoder
from querylearn.runinfo import read_run_paths, stored_path

RUN_KIND = "train-run"
RUN_SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available else cpu; other torch device strings must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a torch device (use auto, cpu, cuda, cuda:1, mps)"
        ) from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ConfigError(
            f"device {name!r} is not available here ({torch.cuda.device_count()} CUDA devices); use --device auto or cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r} is not available here; use --device auto or cpu")
    return device


def task_data(ds: Dataset, name: str) -> TaskData:
    """The task's examples by split, with label range checks."""
    t = ds.task(name)
    n_classes = len(ds.vocab) if t.kind == "next_query" else int(t.n_labels)
    if len(t.label) and (t.label.min() < 0 or t.label.max() >= n_classes):
        raise ArtifactError(
            f"{ds.path}/tasks/{name}.npz: labels must lie in [0, {n_classes}), found {t.label.min()}..{t.label.max()} "
            "(re-create the dataset with 'querylearn prepare')"
        )
    users, labels = {}, {}
    for split in SPLIT_NAMES:
        rows = t.rows(split)
        users[split] = t.user_index[rows].astype(np.int64)
        labels[split] = t.label[rows].astype(np.int64)
    return TaskData(name=name, kind=t.kind, metric=t.metric, n_classes=n_classes, users=users, labels=labels)


def load_input_vectors(emb_dir: str | Path, ds: Dataset) -> np.ndarray:
    """Input-embedding init [V, D] float32 aligned with the dataset vocabulary.

    ``emb_dir`` is an EmbeddingTable from ``embed-init`` (meta.json + vocab.json + vectors.npy,
    loaded and vocabulary-checked with ``querylearn.embeddings.table``), or a bare directory with
    ``vectors.npy`` [V, D] (row i = query id i) and optionally a ``vocab.json`` whose queries must
    equal the dataset's.
    """
    emb_dir = Path(emb_dir)
    if (emb_dir / "meta.json").is_file():
        from querylearn.embeddings.table import load_embedding_table  # the embed-init artifact

        table = load_embedding_table(emb_dir)
        table.check_vocab(ds.vocab)
        vectors = np.asarray(table.vectors)
    else:
        vec_path = emb_dir / "vectors.npy"
        if not vec_path.is_file():
            raise ArtifactError(
                f"{emb_dir}: no vectors.npy; create a table with 'querylearn embed-init --data DATASET --out {emb_dir}'"
            )
        vectors = read_npy(vec_path)
        vocab_path = emb_dir / "vocab.json"
        if vocab_path.is_file():
            data = read_json(vocab_path)
            queries = data.get("queries") if isinstance(data, dict) else data
            if queries is not None and list(queries) != list(ds.vocab.queries):
                raise ArtifactError(
                    f"{vocab_path}: vocabulary differs from {ds.path}/vocab.json; rebuild the table from this dataset"
                )
    if vectors.ndim != 2 or vectors.shape[0] != len(ds.vocab):
        raise ArtifactError(
            f"{emb_dir}/vectors.npy: expected [{len(ds.vocab)}, D] (one row per query of {ds.path}/vocab.json), found {list(vectors.shape)}"
        )
    if not np.issubdtype(vectors.dtype, np.floating) or not np.isfinite(vectors).all():
        raise ArtifactError(f"{emb_dir}/vectors.npy: vectors must be finite floats")
    return vectors.astype(np.float32)


def _fused_adam_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused Adam needs floating-point parameters on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return (
        len(devices) == 1
        and next(iter(devices)).type in ("cpu", "cuda")
        and all(p.is_floating_point() for p in params)
    )


def _batches(n: int, batch_size: int, rng: np.random.Generator | None, drop_last: bool) -> list[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = (n // batch_size) * batch_size if drop_last else n
    return [order[i : i + batch_size] for i in range(0, stop, batch_size)]


# ---------------------------------------------------------------------------------------------
# losses and evaluation
# ---------------------------------------------------------------------------------------------
def next_query_loss(
    model: UserEncoder,
    ids: torch.Tensor,
    task: str,
    s: float,
    config: TrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, EncoderOutput]:
    """Autoregressive CE over all positions (3.4). ids [B, L] -> (loss, output with logits [B, L-1, S]).

    Sampled softmax (``next_query.sampled_softmax = K``): the candidates are the batch's distinct
    targets plus K uniform negatives (one shared set per batch); with uniform negatives the usual
    log-Q correction is a constant and is omitted.
    """
    inputs, targets = ids[:, :-1], ids[:, 1:].contiguous()  # [B, L-1]
    nq = config.next_query
    keep = (targets != PAD_ID).reshape(-1) if nq.ignore_padding else None  # [B(L-1)]
    candidates = None
    if nq.sampled_softmax > 0:
        vocab = model.heads.n_classes(task)
        negatives = torch.randint(vocab, (nq.sampled_softmax,), generator=generator).to(ids.device)
        candidates = torch.unique(torch.cat([targets.reshape(-1), negatives]))  # sorted [S]
        targets = torch.searchsorted(candidates, targets)  # positions in the candidate list
    out = model(inputs, task, s=s, all_positions=True, candidates=candidates)
    logits = out.logits.reshape(-1, out.logits.shape[-1])  # [B(L-1), S]
    flat = targets.reshape(-1)
    if keep is None:
        return F.cross_entropy(logits, flat), out
    per_position = F.cross_entropy(logits, flat, reduction="none")
    return (per_position * keep).sum() / keep.sum().clamp_min(1), out


def label_loss(model: UserEncoder, batch: Batch, s: float) -> tuple[torch.Tensor, EncoderOutput]:
    """Softmax CE on the last position (3.5); each distinct sequence is encoded once."""
    out = model(batch.ids, batch.task, s=s)  # logits [U, C]
    logits = out.logits[batch.inverse]  # [B, C]
    return F.cross_entropy(logits, batch.labels), out


@torch.no_grad()
def evaluate(
    model: UserEncoder,
    task: TaskData,
    split: str,
    sequences: torch.Tensor,
    *,
    config: TrainConfig,
    batch_size: int,
) -> dict[str, float | int | None]:
    """Ranking metrics (mrr/hr/ndcg@5/20, accuracy = hit@1) over every row of ``split``.

    Ranks are counted in torch (number of strictly higher logits, as in querylearn.metrics).
    """
    was_training = model.training
    model.eval()
    device = sequences.device
    users, labels = task.users[split], task.labels[split]
    masks = model.task_masks(task.name, config.smax)
    ranks = []
    for start in range(0, len(users), batch_size):
        u = users[start : start + batch_size]
        y = torch.as_tensor(labels[start : start + batch_size], device=device)
        uniq, inv = np.unique(u, return_inverse=True)
        x = sequences[torch.as_tensor(uniq, device=device)]  # [U, L]
        if task.kind == "next_query":
            x = x[:, :-1]
        hidden = model.encode(x, masks, task=task.name)[torch.as_tensor(inv, device=device)]  # [B, C]
        logits = model.heads(hidden, task.name)  # [B, n]
        if task.kind == "next_query" and config.next_query.exclude_padding_from_ranking:
            logits[:, PAD_ID] = float("-inf")
        target = logits.gather(1, y[:, None])  # [B, 1]
        ranks.append((logits > target).sum(dim=1).cpu())
    model.train(was_training)
    rank_arr = torch.cat(ranks).numpy() if ranks else np.zeros(0, dtype=np.int64)
    metrics: dict[str, float | int | None] = {
        k: (None if math.isnan(v) else v) for k, v in ranking_metrics(rank_arr, (5, 20)).items()
    }
    metrics["n"] = int(len(rank_arr))
    return metrics


# ---------------------------------------------------------------------------------------------
# fit: one task (or several jointly)
# ---------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    epochs: int
    best_epoch: int
    best_valid: float | None
    seconds_per_epoch: float
    skipped_steps: int
    history: list[dict] = field(default_factory=list)


class _NullProgress:
    def start(self, description: str, total: int):
        return None

    def advance(self, handle, loss: float | None = None) -> None:
        pass

    def stop(self, handle) -> None:
        pass

    def epoch_end(self, label: str, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """Rich progress bar per epoch with the running loss and ETA."""

    def __init__(self, console=None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._loss: dict = {}

    def start(self, description: str, total: int):
        if not self.progress.live.is_started:
            self.progress.start()
        handle = self.progress.add_task(description, total=total, loss="-")
        self._loss[handle] = []
        return handle

    def advance(self, handle, loss: float | None = None) -> None:
        if loss is not None:
            self._loss[handle].append(loss)
        recent = self._loss[handle][-50:]
        shown = f"{sum(recent) / len(recent):.4f}" if recent else "-"
        self.progress.update(handle, advance=1, loss=shown)

    def stop(self, handle) -> None:
        self.progress.remove_task(handle)
        self._loss.pop(handle, None)

    def epoch_end(self, label: str, record: dict) -> None:
        sel = record.get("selection")
        extra = "".join(
            f" {k[6:]} {v:.4f}" for k, v in record.items() if k.startswith("train_") and k != "train_loss"
        )
        self.progress.console.print(
            f"{label} epoch {record['epoch']}: loss {record['train_loss']:.4f}{extra}, valid "
            f"{'n/a' if sel is None else f'{sel:.4f}'}{' *' if record['improved'] else ''} ({record['seconds']:.1f}s)",
            highlight=False,
        )

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def _selection_value(metrics: dict, task: TaskData, selection: str) -> float | None:
    key = task.metric if selection == "task" else selection
    v = metrics.get(key)
    return None if v is None else float(v)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
    log: Callable[[dict], None] = lambda record: None,
    progress=None,
    label: str = "",
    train_phase: int = 0,
) -> FitResult:
    """Train ``model`` on ``train_tasks`` (one task, or several jointly for multitask).

    Per epoch: shuffled batches of every train task (interleaved when joint), s annealed per batch
    (Eq. 19), task loss + strategy.extra_losses, a non-finite total skips the step (fixes B6), then
    validation on every train task at s = smax; the best epoch's weights (by the selection
    metric, mean over joint tasks) are restored at the end.
    """
    progress = progress or _NullProgress()
    device = sequences.device
    phase: PhaseConfig = config.phase(position)
    generator = _seed_everything(seed)
    rng = np.random.default_rng(seed)
    task = train_tasks[-1]
    ctx = TrainContext(
        model=model,
        optimizer=None,
        task=task,
        position=position,
        config=config,
        device=device,
        generator=generator,
        tasks=all_tasks,
        logger=log,
        phase=train_phase,
    )
    strategy.before_task(ctx, task)  # may freeze parameters: the optimiser comes after
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(
        params,
        lr=phase.lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=phase.weight_decay,
        fused=_fused_adam_ok(params),  # same update, one kernel (about 4x faster on CPU)
    )
    ctx.optimizer = optimizer
    batch_size = {
        t.name: (config.phase(i).batch_size if strategy.joint else phase.batch_size)
        for i, t in enumerate(train_tasks)
    }
    best_value: float | None = None
    best_epoch = 0
    best_state = copy.deepcopy(model.state_dict())
    best_strategy_state = copy.deepcopy(strategy.state_dict())
    bad_epochs = 0
    train_seconds: list[float] = []
    history: list[dict] = []
    skipped = 0
    for epoch in range(1, phase.max_epochs + 1):
        ctx.epoch = epoch
        model.train()
        schedule = []
        for t in train_tasks:
            for b, idx in enumerate(_batches(t.n("train"), batch_size[t.name], rng, config.drop_last)):
                schedule.append((t, b, idx))
        if len(train_tasks) > 1:
            schedule = [schedule[i] for i in rng.permutation(len(schedule))]
        handle = progress.start(f"{label} epoch {epoch}/{phase.max_epochs}", len(schedule))
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        extra_sums: dict[str, torch.Tensor] = {}
        n_steps = 0
        for t, b, idx in schedule:
            ctx.s = anneal_s(b, t.n("train") / batch_size[t.name], config.smax)
            users = t.users["train"][idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                if t.kind == "next_query":
                    ids = sequences[torch.as_tensor(users, device=device)]  # [B, L]
                    batch = Batch(t.name, ids, torch.arange(len(users), device=device), None)
                    loss, out = next_query_loss(model, ids, t.name, ctx.s, config, generator)
                else:
                    uniq, inv = np.unique(users, return_inverse=True)
                    batch = Batch(
                        t.name,
                        sequences[torch.as_tensor(uniq, device=device)],  # [U, L]
                        torch.as_tensor(inv, device=device),
                        torch.as_tensor(t.labels["train"][idx], device=device),
                    )
                    loss, out = label_loss(model, batch, ctx.s)
                extras = strategy.extra_losses(ctx, batch, out)
                total = loss + sum(extras.values()) if extras else loss
            optimizer.zero_grad(set_to_none=True)
            total_value = float(total.detach())
            if not math.isfinite(total_value):
                skipped += 1
                progress.advance(handle, None)
                continue
            total.backward()
            strategy.after_backward(ctx)
            optimizer.step()
            strategy.after_step(ctx)
            ctx.step += 1
            n_steps += 1
            loss_sum += loss.detach()
            for k, v in extras.items():
                extra_sums[k] = extra_sums.get(k, torch.zeros((), device=device)) + v.detach()
            progress.advance(handle, total_value)
        seconds = time.perf_counter() - t0
        progress.stop(handle)
        train_seconds.append(seconds)
        valid = {
            t.name: evaluate(model, t, "valid", sequences, config=config, batch_size=phase.eval_batch_size)
            for t in train_tasks
        }
        values = [_selection_value(valid[t.name], t, config.selection_metric) for t in train_tasks]
        value = None if any(v is None for v in values) else float(np.mean(values))
        improved = (
            best_value is None
            and epoch == 1
            or (value is not None and (best_value is None or value > best_value))
        )
        record = {
            "task": task.name,
            "phase": train_phase,
            "epoch": epoch,
            "train_loss": float(loss_sum) / max(n_steps, 1),
            **{f"train_{k}": float(v) / max(n_steps, 1) for k, v in extra_sums.items()},
            "steps": n_steps,
            "skipped_steps": skipped,
            "seconds": seconds,
            "valid": valid if len(train_tasks) > 1 else valid[task.name],
            "selection": value,
            "improved": bool(improved),
            **strategy.epoch_summary(),
        }
        history.append(record)
        log(record)
        progress.epoch_end(label, record)
        if improved:
            best_value, best_epoch, bad_epochs = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_strategy_state = copy.deepcopy(strategy.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= phase.patience:
                break
    model.load_state_dict(best_state)
    strategy.load_state_dict(best_strategy_state)
    strategy.after_task(ctx, task)
    return FitResult(
        epochs=len(train_seconds),
        best_epoch=best_epoch,
        best_valid=best_value,
        seconds_per_epoch=float(np.mean(train_seconds)) if train_seconds else 0.0,
        skipped_steps=skipped,
        history=history,
    )


# ---------------------------------------------------------------------------------------------
# the run: tasks in order, R after every task, checkpoints, resume
# ---------------------------------------------------------------------------------------------
def resolve_task_order(ds: Dataset, requested: tuple[str, ...] | list[str]) -> list[str]:
    """The dataset's order, or ``requested``; names must exist, appear once, and the dataset's
    next_query task (T1, which defines the input vocabulary) must come first when it is used."""
    order = list(requested) if requested else ds.task_names
    for name in order:
        if name not in ds.task_names:
            raise ConfigError(f"task '{name}' is not in {ds.path}; available: {', '.join(ds.task_names)}")
    dup = sorted({n for n in order if order.count(n) > 1})
    if dup:
        raise ConfigError(f"task '{dup[0]}' is listed twice in --tasks")
    kinds = {t.name: t.kind for t in ds.tasks}
    nq = [n for n in order if kinds[n] == "next_query"]
    if nq and order[0] != nq[0]:
        raise ConfigError(
            f"the next_query task '{nq[0]}' must come first (T1 defines the vocabulary); got order {','.join(order)}"
        )
    return order


def _stem(run_dir: Path, position: int, name: str, sub: str = "checkpoints") -> Path:
    return run_dir / sub / f"{position + 1:02d}-{name}"


def _r_csv(tasks: list[str], R: list[list[float | None]]) -> str:
    lines = ["after," + ",".join(tasks)]
    for i, row in enumerate(R):
        lines.append(tasks[i] + "," + ",".join("" if v is None else f"{v:.6f}" for v in row))
    return "\n".join(lines) + "\n"


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class _Run:
    """Mutable state of one train-sequence run (history carried in every checkpoint)."""

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        ds: Dataset,
        order: list[str],
        vectors: np.ndarray | None,
        progress,
    ):
        self.run_dir = run_dir
        self.config = config
        self.ds = ds
        self.order = order
        self.vectors = vectors
        self.progress = progress
        self.device = resolve_device(config.device)
        self.sequences = torch.as_tensor(
            np.asarray(ds.sequences, dtype=np.int64), device=self.device
        )  # [n_users, L]
        self.tasks = {name: task_data(ds, name) for name in ds.task_names}
        self.strategy = build_strategy(config.strategy, config)
        self.history: dict = {"R": [], "R_detail": [], "single": [], "single_detail": [], "per_task": []}
        self.models: list[UserEncoder] = []  # separate_models: task i's own model

    def new_model(self, masking: str | None = None) -> UserEncoder:
        return UserEncoder(
            len(self.ds.vocab),
            self.config.model,
            masking=masking or self.strategy.masking,
            init_vectors=self.vectors,
        ).to(self.device)

    def task_seed(self, position: int, offset: int = 0) -> int:
        return int(self.config.seed) * 1_000_003 + 1000 * position + offset

    def _logger(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w", encoding="utf-8")

        def log(record: dict) -> None:
            fh.write(json.dumps(_jsonable(record), ensure_ascii=False) + "\n")
            fh.flush()

        return log, fh

    def train_single(self, position: int) -> dict:
        """SinMo score of task ``position`` (FWT reference): a fresh unmasked model on that task only."""
        name = self.order[position]
        task = self.tasks[name]
        _seed_everything(self.task_seed(position, offset=500))
        model = self.new_model("none")
        model.add_task(name, task.n_classes)
        single = build_strategy("single", self.config)
        log, fh = self._logger(self.run_dir / "logs" / "single" / f"{position + 1:02d}-{name}.jsonl")
        try:
            fit(
                model,
                single,
                [task],
                all_tasks=self.tasks,
                sequences=self.sequences,
                config=self.config,
                position=position,
                seed=self.task_seed(position, offset=500),
                log=log,
                progress=self.progress,
                label=f"single {name}",
            )
        finally:
            fh.close()
        return evaluate(
            model,
            task,
            "test",
            self.sequences,
            config=self.config,
            batch_size=self.config.phase(position).eval_batch_size,
        )

    def learn(self, position: int, model: UserEncoder | None) -> UserEncoder:
        name = self.order[position]
        seen = [self.tasks[n] for n in self.order[: position + 1]]
        _seed_everything(self.task_seed(position))
        model = self.strategy.setup_model(model, seen, self.new_model)
        log, fh = self._logger(self.run_dir / "logs" / f"{position + 1:02d}-{name}.jsonl")
        results = []
        try:
            train_tasks = seen if self.strategy.joint else [seen[-1]]
            for phase in range(self.strategy.n_phases):
                results.append(
                    fit(
                        model,
                        self.strategy,
                        train_tasks,
                        all_tasks=self.tasks,
                        sequences=self.sequences,
                        config=self.config,
                        position=position,
                        seed=self.task_seed(position, offset=phase),
                        log=log,
                        progress=self.progress,
                        label=name if self.strategy.n_phases == 1 else f"{name} phase {phase + 1}",
                        train_phase=phase,
                    )
                )
        finally:
            fh.close()
        epochs = sum(r.epochs for r in results)
        result = FitResult(
            epochs=epochs,
            best_epoch=results[-1].best_epoch,
            best_valid=results[-1].best_valid,
            seconds_per_epoch=sum(r.seconds_per_epoch * r.epochs for r in results) / max(epochs, 1),
            skipped_steps=sum(r.skipped_steps for r in results),
        )
        if self.strategy.separate_models:
            self.models.append(model)
        row, detail = [], []
        for j, past in enumerate(seen):
            eval_model = self.models[j] if self.strategy.separate_models else model
            m = evaluate(
                eval_model,
                past,
                "test",
                self.sequences,
                config=self.config,
                batch_size=self.config.phase(j).eval_batch_size,
            )
            detail.append(m)
            row.append(m[past.metric])
        self.history["R"].append(row + [None] * (len(self.order) - len(row)))
        self.history["R_detail"].append(detail)
        self.history["per_task"].append(
            {
                "task": name,
                "epochs": result.epochs,
                "best_epoch": result.best_epoch,
                "best_valid": result.best_valid,
                "seconds_per_epoch": result.seconds_per_epoch,
                "skipped_steps": result.skipped_steps,
            }
        )
        if self.config.with_single:
            if self.strategy.separate_models:
                single = detail[-1]
            else:
                single = self.train_single(position)
            self.history["single"].append(single[seen[-1].metric])
            self.history["single_detail"].append(single)
        save_checkpoint(
            _stem(self.run_dir, position, name),
            model,
            {
                "position": position,
                "task": name,
                "tasks_seen": self.order[: position + 1],
                "strategy": self.strategy.name,
                "config": to_dict(self.config),
                "history": _jsonable(self.history),
            },
            self.strategy.state_dict(),
        )
        return model

    def restore(self, position: int) -> UserEncoder:
        """Load the checkpoint after task ``position`` (and earlier ones for separate models)."""
        path = _stem(self.run_dir, position, self.order[position]).with_suffix(".json")
        model, meta, strategy_state = load_checkpoint(path, self.device)
        if meta["tasks_seen"] != self.order[: position + 1]:
            raise ArtifactError(
                f"{path}: tasks_seen {meta['tasks_seen']} differ from the run's order {self.order[: position + 1]}"
            )
        self.strategy.load_state_dict(strategy_state)
        self.history = meta["history"]
        for row in self.history["R"]:  # the order may have grown by --add-task
            row.extend([None] * (len(self.order) - len(row)))
        if self.strategy.separate_models:
            self.models = [
                load_checkpoint(_stem(self.run_dir, j, self.order[j]).with_suffix(".json"), self.device)[0]
                for j in range(position)
            ]
            self.models.append(model)
        return model

    def metrics(self) -> dict:
        R = [row[: len(self.order)] for row in self.history["R"]]
        single = self.history["single"] if self.config.with_single else None
        if self.strategy.separate_models:
            single = [R[i][i] for i in range(len(R))]
        out = {
            "kind": "train-metrics",
            "schema_version": 1,
            "querylearn_version": __version__,
            "strategy": self.strategy.name,
            "tasks": self.order,
            "metric": [self.tasks[n].metric for n in self.order],
            "R": R,
            "R_detail": self.history["R_detail"],
            "single": single,
            "fwt": fwt(R, single) if single is not None else {"per_task": [None] * len(R), "mean": None},
            "bwt": bwt(R),
            "seconds_per_epoch": [p["seconds_per_epoch"] for p in self.history["per_task"]],
            "epochs": [p["epochs"] for p in self.history["per_task"]],
            "best_epoch": [p["best_epoch"] for p in self.history["per_task"]],
            "skipped_steps": [p["skipped_steps"] for p in self.history["per_task"]],
            "seed": self.config.seed,
            "device": str(self.device),
            "data": str(self.ds.path),
        }
        return _jsonable(out)


def _check_tasks(ds: Dataset, order: list[str]) -> None:
    """Every task needs training rows; next_query needs sequences of at least 2 positions."""
    for name in order:
        t = ds.task(name)
        if len(t.rows("train")) == 0:
            raise DataError(
                ds.path / "tasks" / f"{name}.npz",
                "no training rows",
                fix="re-create the dataset with more users or leave the task out with --tasks",
            )
        if t.kind == "next_query" and ds.seq_len < 2:
            raise DataError(
                ds.path / "sequences.npy",
                f"seq_len {ds.seq_len} < 2: next_query needs an input and a target",
                fix="prepare with --seq-len 2 or more",
            )


def _check_run_dir(run_dir: Path) -> None:
    if (run_dir / "run.json").exists() or (run_dir / "checkpoints").exists():
        raise QuerylearnError(
            f"{run_dir}: already holds a run; continue it with 'querylearn train-sequence --resume {run_dir}' or choose a new --out"
        )


def train_sequence(
    data: str | Path | None = None,
    out: str | Path | None = None,
    *,
    config: TrainConfig | None = None,
    embeddings: str | Path | None = None,
    resume: str | Path | None = None,
    add_task: str | None = None,
    progress=None,
    on_task_end: Callable[[int, str, dict], None] | None = None,
) -> dict:
    """Train the task sequence and write RUN_DIR; returns the metrics dict (also ``metrics.json``).

    New run: ``data`` + ``out`` + ``config``. ``resume=RUN_DIR`` continues from the last complete
    checkpoint with the stored config (``data``/``config`` must be None); ``add_task=NAME`` (with
    ``resume``) appends one more task to a finished run. ``on_task_end(position, name, metrics)``
    is called after each task's checkpoint (tests use it to simulate an interruption).
    """
    if resume is not None:
        run_dir = Path(resume)
        if config is not None or data is not None or embeddings is not None:
            raise ConfigError(
                "--resume uses the run's stored config, data and embeddings; drop --config/--data/--embeddings and other overrides"
            )
        if out is not None and Path(out).resolve() != run_dir.resolve():
            raise ConfigError(f"--out {out} differs from --resume {run_dir}; pass only --resume RUN_DIR")
        run_meta = read_json(run_dir / "run.json")
        if run_meta.get("kind") != RUN_KIND:
            raise ArtifactError(
                f"{run_dir}/run.json: expected kind '{RUN_KIND}', found {run_meta.get('kind')!r}"
            )
        config = load_config(TrainConfig, run_dir / "config.toml")
        paths = read_run_paths(run_dir)  # relative to the run directory (older runs: absolute)
        data, embeddings = paths.data, paths.embeddings
    else:
        if data is None or out is None:
            raise ConfigError(
                "train-sequence needs --data DATASET_DIR and --out RUN_DIR (or --resume RUN_DIR)"
            )
        if add_task is not None:
            raise ConfigError("--add-task needs --resume RUN_DIR (a finished run to extend)")
        run_dir = Path(out)
        _check_run_dir(run_dir)
        config = config or TrainConfig()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    ds = load_dataset(data)
    order = resolve_task_order(ds, config.tasks)
    if add_task is not None:
        if add_task in order:
            raise ConfigError(f"--add-task {add_task}: the run already has this task ({','.join(order)})")
        done = [p for p in range(len(order)) if _stem(run_dir, p, order[p]).with_suffix(".json").is_file()]
        if len(done) != len(order):
            raise QuerylearnError(
                f"{run_dir}: the run is unfinished ({len(done)}/{len(order)} tasks); first run --resume {run_dir} without --add-task"
            )
        order = resolve_task_order(ds, order + [add_task])
        config = dataclasses.replace(config, tasks=tuple(order))
    _check_tasks(ds, order)
    vectors = load_input_vectors(embeddings, ds) if embeddings is not None else None
    run = _Run(run_dir, config, ds, order, vectors, progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    stored = dataclasses.replace(config, tasks=tuple(order))
    atomic_write_bytes(run_dir / "config.toml", dump_toml(stored).encode("utf-8"))
    write_json(
        run_dir / "run.json",
        {
            "kind": RUN_KIND,
            "schema_version": RUN_SCHEMA_VERSION,
            "querylearn_version": __version__,
            "data": stored_path(data, run_dir),
            "embeddings": None if embeddings is None else stored_path(embeddings, run_dir),
            "strategy": config.strategy,
            "tasks": order,
        },
    )
    model: UserEncoder | None = None
    start = 0
    if resume is not None:
        done = [p for p in range(len(order)) if _stem(run_dir, p, order[p]).with_suffix(".json").is_file()]
        if done:
            last = max(done)
            if done != list(range(last + 1)):
                raise ArtifactError(f"{run_dir}/checkpoints: missing checkpoints before task {order[last]}")
            model = run.restore(last)
            start = last + 1
    try:
        for position in range(start, len(order)):
            model = run.learn(position, model)
            metrics = run.metrics()
            write_json(run_dir / "metrics.json", metrics)
            atomic_write_bytes(
                run_dir / "R.csv",
                _r_csv(order[: position + 1], [r[: position + 1] for r in metrics["R"]]).encode("utf-8"),
            )
            if on_task_end is not None:
                on_task_end(position, order[position], metrics)
    finally:
        if progress is not None:
            progress.close()
    metrics = run.metrics()
    write_json(run_dir / "metrics.json", metrics)
    atomic_write_bytes(run_dir / "R.csv", _r_csv(order, metrics["R"]).encode("utf-8"))
    return metrics
