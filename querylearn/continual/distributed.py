"""Data-parallel train-sequence across processes (torchrun; gloo on CPU, NCCL on GPU).

``torchrun --nproc-per-node N -m querylearn train-sequence ...`` (or ``train-sequence --nproc N``)
starts N copies of the command. Each process:

* joins the process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT); its device is ``cuda:LOCAL_RANK`` when the configured device is CUDA, else the CPU;
* draws the same global batches as one process would (same seeds, same shuffles) and trains on its
  contiguous share of each batch (:func:`shard`);
* after ``backward`` all-reduces the gradients, each scaled by its share of the global batch
  (:func:`average_gradients`), so every rank takes the same step as one process on the whole batch
  (for losses that are means over the batch's rows; terms that do not depend on the batch, such as
  HAT's mask regulariser, are kept exactly since the shares sum to 1). This is DDP's averaging, done
  explicitly after ``backward`` so that the strategies' gradient hooks (HAT/TERACON compensation)
  see the averaged gradient. A step is skipped on every rank when any rank's loss is not finite;
* evaluates its contiguous share of the rows and all-gathers the integer ranks
  (:func:`gather_ranks`), so every rank computes the metrics of one process from the same ranks and
  takes the same early-stopping decision;
* writes nothing unless it is rank 0 (checkpoints, logs, run.json, metrics.json, progress);
* on the CPU reads the sequences through :class:`MappedSequences` (the memory-mapped int32
  ``sequences.npy``: the processes of one machine share its pages instead of each holding an int64
  copy; only the rows of a batch are copied).

Without torchrun's environment (WORLD_SIZE unset or 1) every function here is the identity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


class MappedSequences:
    """``sequences.npy`` [n_users, L] int32, memory-mapped, indexed like the int64 device tensor.

    ``seqs[rows]`` (rows: an int64 tensor of user indices) -> int64 tensor [len(rows), L] on
    ``device``. Only these rows are read and copied, so a process never holds all the sequences
    (1M users x 60 positions: 480 MB as int64 per process otherwise).
    """

    def __init__(self, array: np.ndarray, device: torch.device):
        self.array = array
        self.device = torch.device(device)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        idx = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return torch.from_numpy(np.asarray(self.array[idx], dtype=np.int64)).to(self.device)


def world() -> World:
    """This process's place (rank 0 of 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def init_from_env(device: str) -> World:
    """Join the process group when torchrun's WORLD_SIZE > 1 (idempotent); returns the world.

    ``device``: the configured device; CUDA -> NCCL on ``cuda:LOCAL_RANK``, anything else -> gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    return world()


def local_device(device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA device under torchrun (never a hard-coded index); else ``device``."""
    w = world()
    if w.active and device.type == "cuda":
        return torch.device("cuda", w.local_rank)
    return device


def barrier() -> None:
    if world().active:
        dist.barrier()


def shard(rows: np.ndarray) -> tuple[np.ndarray, float]:
    """(this rank's contiguous share of ``rows``, its fraction of them) (np.array_split: sizes differ
    by at most 1). A rank left without rows (fewer rows than ranks) gets the first row with fraction 0:
    it computes a finite loss whose gradient counts for nothing, and joins the same collectives."""
    w = world()
    if not w.active:
        return rows, 1.0
    part = np.array_split(rows, w.size)[w.rank]
    if not len(part):
        return rows[:1], 0.0
    return part, len(part) / len(rows)


def shard_slice(n: int) -> slice:
    """This rank's contiguous share of ``range(n)`` for evaluation (may be empty); all of it in one
    process."""
    w = world()
    if not w.active:
        return slice(0, n)
    bounds = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(n), w.size)])
    return slice(int(bounds[w.rank]), int(bounds[w.rank + 1]))


def all_finite(value: float) -> bool:
    """Whether ``value`` is finite on every rank."""
    if not world().active:
        return math.isfinite(value)
    ok = torch.tensor([1.0 if math.isfinite(value) else 0.0])
    if dist.get_backend() == "nccl":
        ok = ok.to(torch.device("cuda", world().local_rank))
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)


def average_gradients(optimizer: torch.optim.Optimizer, share: float) -> None:
    """grad <- sum over ranks of (share_r * grad_r) for the optimiser's parameters that have a gradient.

    ``share`` = this rank's rows / the global batch's rows. Every rank trains the same task with the same
    model, so the same parameters have gradients everywhere (one flat all-reduce per step).
    """
    if not world().active:
        return
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]) * share
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def gather_ranks(ranks: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ranks [n_r] in rank order -> [sum n_r] (the shards of :func:`shard`)."""
    w = world()
    if not w.active:
        return ranks
    local = ranks.to(torch.int64).cpu()
    if dist.get_backend() == "nccl":
        local = local.to(torch.device("cuda", w.local_rank))
    n = torch.tensor([len(local)], device=local.device)
    sizes = [torch.zeros_like(n) for _ in range(w.size)]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.int64, device=local.device)
    padded[: len(local)] = local
    parts = [torch.zeros_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)]).cpu()


def shutdown() -> None:
    """Leave the process group (no-op outside torchrun).

    Call it before the process exits: a gloo group still alive at interpreter exit is torn down
    with its worker threads running, which aborts the process ("terminate called without an active
    exception", SIGABRT) after a run that succeeded. ``train-sequence`` calls it when its command
    closes, whether the run succeeded or failed.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
