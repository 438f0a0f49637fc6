"""The cold-start evaluation: one split, one set of candidate lists, every method ranked on them.

``coldstart_eval(dataset, sources, config)`` returns the report dict (see ``report.py`` for the
files). Methods, in table order:

- ``most-popular``, ``als``, ``bpr`` (classic baselines, ``baselines.py``);
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
from querylearn.recsys.baselines import (
    BaselineConfig,
    als_scores,
    bpr_scores,
    most_popular_scores,
    random_representations,
)
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
from querylearn.recsys.representations import UserRepresentations, align_to_dataset, standardise
from querylearn.recsys.train import NCFConfig, score_candidates, train_ncf

BASELINES = ("most-popular", "als", "bpr", "random")
REPORT_KIND = "coldstart_report"
REPORT_SCHEMA_VERSION = 1
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
) -> dict:
    """Run every method on the same split and candidate lists; return the report dict.

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


def _coldstart_eval(dataset, sources, config, item_vectors, item_vectors_origin, log) -> dict:
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

    aligned: list[tuple[str, np.ndarray, str]] = []
    for src in sources:
        vec = align_to_dataset(src, dataset.user_ids, required)
        if config.standardise_reps:
            vec = standardise(vec, np.flatnonzero(required))
        aligned.append((src.name, vec, src.origin))

    methods: dict[str, dict] = {}

    def record(name: str, scores: np.ndarray, info: dict) -> None:
        try:
            ranks = candidate_ranks(scores, keys)
        except ValueError as exc:
            raise QuerylearnError(f"method {name}: {exc}") from None
        entry = group_metrics(ranks, cold)
        entry.update(info)
        entry["tied_targets"] = tied_target_rows(scores)
        methods[name] = entry
        hr = {
            g: ("-" if entry[g]["hr@10"] is None else f"{entry[g]['hr@10']:.4f}")
            for g in ("warm", "cold", "all")
        }
        log(f"{name}: HR@10 all {hr['all']} (warm {hr['warm']}, cold {hr['cold']}) in {info['seconds']:.1f}s")

    for base in ("most-popular", "als", "bpr"):
        if base not in config.baselines:
            continue
        t0 = time.perf_counter()
        if base == "most-popular":
            scores = most_popular_scores(split, users, cands)
        elif base == "als":
            scores = als_scores(split, users, cands, config.baseline, config.seed, config.threads)
        else:
            scores = bpr_scores(split, users, cands, config.baseline, config.seed, config.threads)
        record(base, scores, {"kind": "baseline", "seconds": time.perf_counter() - t0})

    model = config.ncf.model

    def run_ncf(name: str, variant: str, reps: np.ndarray | None, source: str | None, kind: str) -> None:
        res = train_ncf(
            split,
            config.ncf,
            variant=variant,
            reps=reps,
            valid=valid,
            item_vectors=item_vectors,
            seed=config.seed,
        )
        scores = score_candidates(res.model, users, cands)
        info = {
            "kind": kind,
            "model": model,
            "variant": variant,
            "source": source,
            "dim": None if reps is None else int(reps.shape[1]),
            "best_epoch": res.best_epoch,
            "valid_hr@10": res.valid_hr10,
            "train_loss": res.losses,
            "seconds": res.seconds,
        }
        record(name, scores, info)

    if "id" in config.variants:
        run_ncf(f"{model}-id", "id", None, None, "ncf")
    rep_variants = [v for v in config.variants if v != "id"]
    if rep_variants and not sources:
        log("no --run / --users-from given: skipping the representation variants " + ", ".join(rep_variants))
    for variant in rep_variants:
        if "random" in config.baselines:
            for dim in sorted({vec.shape[1] for _, vec, _ in aligned}):
                reps = random_representations(dataset.n_users, dim, config.seed)
                run_ncf(
                    f"{model}-{variant}[random-d{dim}]", variant, reps, f"random N(0, 1), dim {dim}", "random"
                )
        for name, vec, origin in aligned:
            run_ncf(f"{model}-{variant}[{name}]", variant, vec, origin, "ncf")

    return {
        "kind": REPORT_KIND,
        "schema_version": REPORT_SCHEMA_VERSION,
        "querylearn_version": __version__,
        "dataset": str(dataset.path) if dataset.path else None,
        "cold_rule": COLD_RULE,
        "cold_min_train": COLD_MIN_TRAIN,
        "cold_fraction": config.cold_fraction,
        "counts": counts,
        "negatives": config.negatives,
        "seed": config.seed,
        "candidates": {
            "n_lists": int(len(users)),
            "list_length": int(cands.shape[1]),
            "sha256": _digest(cands),
            "n_valid_lists": int(len(valid[0])),
        },
        "tie_rule": TIE_RULE,
        "sources": [{"name": n, "origin": o, "dim": int(v.shape[1])} for n, v, o in aligned],
        "item_init": None
        if item_vectors is None
        else {"origin": item_vectors_origin, "dim": int(item_vectors.shape[1])},
        "config": to_dict(config),
        "methods": methods,
        "seconds": time.perf_counter() - t_start,
    }
