"""The cold-start evaluation: one split, one set of candidate lists, every method ranked on them.

``coldstart_eval(dataset, sources, config)`` returns a ``ColdstartReport`` (``report.py`` writes
its files). Every method is a recommender looked up by name in ``recommenders.RECOMMENDERS`` and
driven through the same ``fit`` / ``score`` calls. Methods, in table order:

- ``most-popular``, ``als``, ``bpr`` (classic baselines, those of ``config.baselines``);
- ``{model}-id`` (plain NCF) when ``id`` is among the variants;
- for every other variant V: ``{model}-V[random-dD]`` (random representation of each dimension D
  that a source has) and ``{model}-V[SOURCE]`` for every representation source.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from querylearn import __version__
from querylearn.config import to_dict
from querylearn.data.dataset import Dataset
from querylearn.errors import ConfigError, QuerylearnError
from querylearn.recsys.baselines import BaselineConfig, random_representations
from querylearn.recsys.evaluate import candidate_ranks, group_metrics, tied_target_rows
from querylearn.recsys.interactions import (
    COLD_MIN_TRAIN,
    COLD_RULE,
    Split,
    leave_one_out_split,
    sample_candidates,
    tiebreak_keys,
)
from querylearn.recsys.ncf import VARIANTS
from querylearn.recsys.recommenders import CLASSIC, FitData, make_recommender
from querylearn.recsys.report import (
    CandidateLists,
    ColdstartReport,
    ItemInit,
    MethodResult,
    NCFInfo,
    SourceInfo,
)
from querylearn.recsys.representations import UserRepresentations, align_to_dataset, standardise
from querylearn.recsys.train import NCFConfig

BASELINES = (*CLASSIC, "random")  # "random": NCF on a random representation of each source's width
TIE_RULE = (
    "rank = number of candidates scored strictly higher than the held-out item, plus the tied ones "
    "ordered ahead of it by seeded random keys shared by every method"
)


@dataclass
class ColdstartConfig:
    """Everything that decides a coldstart-eval report (saved into it)."""

    negatives: int = 99  # sampled never-interacted items per candidate list
    seed: int = 0
    cold_fraction: float = 0.0
    variants: tuple[str, ...] = ("id", "rep")
    baselines: tuple[str, ...] = BASELINES
    standardise_reps: bool = True  # per-dimension z-score of every representation source
    # torch and implicit CPU threads; NCF batches are tiny, so a second thread mostly adds sync overhead
    threads: int = 1
    # worker processes fitting methods side by side (each with ``threads`` threads); 0 = automatic:
    # one per CPU core when the NCF work is big enough to pay for starting them (AUTO_MIN_WORK), else 1.
    # Every method is seeded on its own, so the report is identical for any number of workers.
    workers: int = 0
    ncf: NCFConfig = field(default_factory=NCFConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"variants: {v!r} is not one of {', '.join(VARIANTS)}")
        for b in self.baselines:
            if b not in BASELINES:
                raise ConfigError(f"baselines: {b!r} is not one of {', '.join(BASELINES)}")
        if self.workers < 0:
            raise ConfigError(f"workers: must be 0 (automatic) or at least 1, got {self.workers}")
        if self.negatives < 1:
            raise ConfigError(f"negatives: must be at least 1, got {self.negatives}")
        if not 0.0 <= self.cold_fraction <= 1.0:
            raise ConfigError(f"cold_fraction: must lie in [0, 1], got {self.cold_fraction}")


# NCF training examples (positives x (1 + negatives) x epochs, summed over the NCF methods) from which
# automatic workers start processes: below it, starting them (~2 s each: a fresh interpreter imports
# torch) costs more than it saves.
AUTO_MIN_WORK = 3_000_000


@dataclass
class _Job:
    """One method of the report: its table name, kind, registered recommender and user side."""

    name: str
    kind: str
    registered: str
    variant: str | None = None
    reps: np.ndarray | None = None  # [n_users, D]
    source: str | None = None


@dataclass
class _Shared:
    """What every job reads: the split, the candidate lists and the config (sent once per worker)."""

    split: Split
    valid: tuple[np.ndarray, np.ndarray]
    item_vectors: np.ndarray | None
    users: np.ndarray  # [N]
    cands: np.ndarray  # [N, C]
    config: ColdstartConfig


_Fitted = tuple  # (FitSummary, scores [N, C], seconds)
_WORKER_SHARED: _Shared | None = None


def _fit_one(job: _Job, shared: _Shared) -> _Fitted:
    """Fit one recommender and score the test lists (the same calls in the parent or a worker)."""
    cfg = shared.config
    t0 = time.perf_counter()
    rec = make_recommender(
        job.registered, ncf=cfg.ncf, baseline=cfg.baseline, seed=cfg.seed, threads=cfg.threads
    )
    summary = rec.fit(
        FitData(shared.split, valid=shared.valid, user_vectors=job.reps, item_vectors=shared.item_vectors)
    )
    scores = rec.score(shared.users, shared.cands)
    return summary, scores, time.perf_counter() - t0


def _worker_init(shared: _Shared) -> None:
    global _WORKER_SHARED
    _WORKER_SHARED = shared
    torch.set_num_threads(max(1, shared.config.threads))


def _worker_fit(job: _Job) -> _Fitted:
    assert _WORKER_SHARED is not None
    return _fit_one(job, _WORKER_SHARED)


def resolve_workers(config: ColdstartConfig, split: Split, jobs: list[_Job]) -> int:
    """``config.workers``, or for 0 the automatic choice (see ``ColdstartConfig.workers``)."""
    if config.workers:
        return max(1, min(config.workers, len(jobs)))
    n_ncf = sum(job.variant is not None for job in jobs)
    work = len(split.train_user) * (1 + config.ncf.train_negatives) * config.ncf.epochs * n_ncf
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, len(jobs))) if work >= AUTO_MIN_WORK else 1


def fit_all(jobs: list[_Job], shared: _Shared, workers: int) -> list[_Fitted]:
    """Results of every job, in the order of ``jobs``.

    With ``workers > 1`` the jobs run in fresh ("spawn") processes, the NCF ones first (longest
    first balances the load); each job seeds itself, so the results are those of the loop.
    """
    if workers <= 1:
        return [_fit_one(job, shared) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].variant is None, i))
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(shared,),
    ) as pool:
        futures = {i: pool.submit(_worker_fit, jobs[i]) for i in order}
        return [futures[i].result() for i in range(len(jobs))]


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.int64).tobytes()).hexdigest()


def build_split(dataset: Dataset, config: ColdstartConfig) -> Split:
    inter = dataset.interactions
    if inter is None or len(inter.user_index) == 0:
        where = dataset.path or "<dataset>"
        raise QuerylearnError(
            f"{where}: the dataset has no interactions (interactions.npz); coldstart-eval needs user-item "
            "interactions (prepare a source that has them, e.g. movielens-100k)"
        )
    return leave_one_out_split(
        inter.user_index,
        inter.item_index,
        inter.timestamp,
        n_users=dataset.n_users,
        n_items=inter.n_items,
        cold_fraction=config.cold_fraction,
        seed=config.seed,
    )


def coldstart_eval(
    dataset: Dataset,
    sources: list[UserRepresentations],
    config: ColdstartConfig,
    *,
    item_vectors: np.ndarray | None = None,
    item_vectors_origin: str | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> ColdstartReport:
    """Run every method on the same split and candidate lists; return the report.

    Uses ``config.threads`` torch threads while it runs (restored afterwards).

    item_vectors: [n_items, E] text vectors (e.g. embed-init of the item titles) that initialise
    the item side of every NCF model, or None for plain item ID embeddings.
    """
    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    try:
        return _coldstart_eval(dataset, sources, config, item_vectors, item_vectors_origin, log)
    finally:
        torch.set_num_threads(threads_before)


def _coldstart_eval(dataset, sources, config, item_vectors, item_vectors_origin, log) -> ColdstartReport:
    t_start = time.perf_counter()
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise QuerylearnError(f"two representation sources are both named '{dup}'; give them distinct names")
    split = build_split(dataset, config)
    counts = split.counts()
    log(
        f"split: {counts['n_eval_users']} users ranked ({counts['n_warm']} warm, {counts['n_cold']} cold, "
        f"{counts['n_cold_zero_train']} with zero training interactions), {counts['n_items']} items"
    )
    users, cands = sample_candidates(
        split, n_negatives=config.negatives, seed=config.seed, which="test", user_names=dataset.user_ids
    )
    valid = sample_candidates(
        split, n_negatives=config.negatives, seed=config.seed, which="valid", user_names=dataset.user_ids
    )
    keys = tiebreak_keys(cands.shape, config.seed)
    cold = split.cold[users]
    required = split.test_item >= 0

    if item_vectors is not None:
        item_vectors = np.asarray(item_vectors, dtype=np.float32)
        if item_vectors.ndim != 2 or item_vectors.shape[0] != split.n_items:
            raise QuerylearnError(
                f"item vectors {item_vectors_origin or ''}: shape {item_vectors.shape}, expected "
                f"[{split.n_items}, D] (one row per item of the dataset)"
            )
        if config.standardise_reps:
            item_vectors = standardise(item_vectors, np.arange(split.n_items))

    aligned: list[SourceInfo] = []
    vectors: list[np.ndarray] = []
    for src in sources:
        vec = align_to_dataset(src, dataset.user_ids, required)
        if config.standardise_reps:
            vec = standardise(vec, np.flatnonzero(required))
        aligned.append(SourceInfo(src.name, src.origin, int(vec.shape[1])))
        vectors.append(vec)

    model = config.ncf.model
    jobs: list[_Job] = []  # in table order
    for base in CLASSIC:
        if base in config.baselines:
            jobs.append(_Job(base, "baseline", base))
    if "id" in config.variants:
        jobs.append(_Job(f"{model}-id", "ncf", f"{model}-id", "id"))
    rep_variants = [v for v in config.variants if v != "id"]
    if rep_variants and not sources:
        log("no --run / --users-from given: skipping the representation variants " + ", ".join(rep_variants))
    for variant in rep_variants:
        if "random" in config.baselines:
            for dim in sorted({vec.shape[1] for vec in vectors}):
                reps = random_representations(dataset.n_users, dim, config.seed)
                jobs.append(
                    _Job(f"{model}-{variant}[random-d{dim}]", "random", f"{model}-{variant}", variant, reps,
                         f"random N(0, 1), dim {dim}")
                )  # fmt: skip
        for info, vec in zip(aligned, vectors, strict=True):
            name = f"{model}-{variant}[{info.name}]"
            jobs.append(_Job(name, "ncf", f"{model}-{variant}", variant, vec, info.origin))

    methods: dict[str, MethodResult] = {}
    user_ranks: dict[str, np.ndarray] = {}  # ranks.npz (report.py)

    def record(job: _Job, fitted: _Fitted) -> None:
        """Rank one method's candidate lists and record its result and its log line."""
        summary, scores, seconds = fitted
        try:
            ranks = candidate_ranks(scores, keys)
        except ValueError as exc:
            raise QuerylearnError(f"method {job.name}: {exc}") from None
        ncf = None
        if job.variant is not None:
            ncf = NCFInfo(
                model=model,
                variant=job.variant,
                source=job.source,
                dim=None if job.reps is None else int(job.reps.shape[1]),
                best_epoch=summary.best_epoch,
                valid_hr10=summary.valid_hr10,
                train_loss=summary.train_loss,
            )
        result = MethodResult(group_metrics(ranks, cold), job.kind, seconds, tied_target_rows(scores), ncf)
        methods[job.name] = result
        user_ranks[job.name] = ranks
        hr = {
            g: ("-" if result.groups[g]["hr@10"] is None else f"{result.groups[g]['hr@10']:.4f}")
            for g in ("warm", "cold", "all")
        }
        log(f"{job.name}: HR@10 all {hr['all']} (warm {hr['warm']}, cold {hr['cold']}) in {seconds:.1f}s")

    shared = _Shared(split, valid, item_vectors, users, cands, config)
    workers = resolve_workers(config, split, jobs)
    if workers > 1:
        log(f"fitting {len(jobs)} methods in {workers} worker processes ({config.threads} thread(s) each)")
    for job, fitted in zip(jobs, fit_all(jobs, shared, workers), strict=True):
        record(job, fitted)

    return ColdstartReport(
        querylearn_version=__version__,
        dataset=str(dataset.path) if dataset.path else None,
        cold_rule=COLD_RULE,
        cold_min_train=COLD_MIN_TRAIN,
        cold_fraction=config.cold_fraction,
        counts=counts,
        negatives=config.negatives,
        seed=config.seed,
        candidates=CandidateLists(
            n_lists=int(len(users)),
            list_length=int(cands.shape[1]),
            sha256=_digest(cands),
            n_valid_lists=int(len(valid[0])),
        ),
        tie_rule=TIE_RULE,
        sources=aligned,
        item_init=None if item_vectors is None else ItemInit(item_vectors_origin, int(item_vectors.shape[1])),
        config=to_dict(config),
        methods=methods,
        seconds=time.perf_counter() - t_start,
        user_ranks=user_ranks,
        user_cold=cold,
    )
