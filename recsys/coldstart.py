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
    ncf: NCFConfig = field(default_factory=NCFConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"variants: {v!r} is not one of {', '.join(VARIANTS)}")
        for b in self.baselines:
            if b not in BASELINES:
                raise ConfigError(f"baselines: {b!r} is not one of {', '.join(BASELINES)}")
        if self.negatives < 1:
            raise ConfigError(f"negatives: must be at least 1, got {self.negatives}")
        if not 0.0 <= self.cold_fraction <= 1.0:
            raise ConfigError(f"cold_fraction: must lie in [0, 1], got {self.cold_fraction}")


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

    methods: dict[str, MethodResult] = {}
    user_ranks: dict[str, np.ndarray] = {}  # ranks.npz (report.py)

    model = config.ncf.model

    def run(
        name: str,
        kind: str,
        variant: str | None = None,
        reps: np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        """Fit one recommender (a classic baseline, or NCF with ``variant``), rank the lists, record it."""
        t0 = time.perf_counter()
        registered = name if variant is None else f"{model}-{variant}"
        rec = make_recommender(
            registered, ncf=config.ncf, baseline=config.baseline, seed=config.seed, threads=config.threads
        )
        summary = rec.fit(FitData(split, valid=valid, user_vectors=reps, item_vectors=item_vectors))
        scores = rec.score(users, cands)
        seconds = time.perf_counter() - t0
        try:
            ranks = candidate_ranks(scores, keys)
        except ValueError as exc:
            raise QuerylearnError(f"method {name}: {exc}") from None
        ncf = None
        if variant is not None:
            ncf = NCFInfo(
                model=model,
                variant=variant,
                source=source,
                dim=None if reps is None else int(reps.shape[1]),
                best_epoch=summary.best_epoch,
                valid_hr10=summary.valid_hr10,
                train_loss=summary.train_loss,
            )
        result = MethodResult(group_metrics(ranks, cold), kind, seconds, tied_target_rows(scores), ncf)
        methods[name] = result
        user_ranks[name] = ranks
        hr = {
            g: ("-" if result.groups[g]["hr@10"] is None else f"{result.groups[g]['hr@10']:.4f}")
            for g in ("warm", "cold", "all")
        }
        log(f"{name}: HR@10 all {hr['all']} (warm {hr['warm']}, cold {hr['cold']}) in {seconds:.1f}s")

    for base in CLASSIC:
        if base in config.baselines:
            run(base, "baseline")
    if "id" in config.variants:
        run(f"{model}-id", "ncf", "id")
    rep_variants = [v for v in config.variants if v != "id"]
    if rep_variants and not sources:
        log("no --run / --users-from given: skipping the representation variants " + ", ".join(rep_variants))
    for variant in rep_variants:
        if "random" in config.baselines:
            for dim in sorted({vec.shape[1] for vec in vectors}):
                reps = random_representations(dataset.n_users, dim, config.seed)
                run(
                    f"{model}-{variant}[random-d{dim}]", "random", variant, reps, f"random N(0, 1), dim {dim}"
                )
        for info, vec in zip(aligned, vectors, strict=True):
            run(f"{model}-{variant}[{info.name}]", "ncf", variant, vec, info.origin)

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
