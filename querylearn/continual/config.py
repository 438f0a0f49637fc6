"""TrainConfig: every hyper-parameter of ``train-sequence`` (defaults: docs/algorithms.md#defaults).

Load with ``querylearn.config_loader.load_config(TrainConfig, "run.toml", {"t1.max_epochs": 3})``;
unknown keys and bad values are ConfigErrors naming the key (docs/config.md). The resolved config is
written to ``RUN_DIR/config.toml`` and into every checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal

from querylearn.config_loader import require
from querylearn.errors import ConfigError
from querylearn.models.masking import DEFAULT_SMAX
from querylearn.models.nextitnet import ModelConfig

SELECTION_METRICS = ("task", "accuracy", "mrr@5", "hr@5", "ndcg@5", "mrr@20", "hr@20", "ndcg@20")


@dataclass
class PhaseConfig:
    """Optimisation of one task: Adam(lr, betas (0.9, 0.999), eps 1e-8, weight_decay), early stopping
    after ``patience`` epochs without a better validation ``selection_metric``."""

    lr: float = 1e-3
    batch_size: int = 1024
    eval_batch_size: int = 1024
    max_epochs: int = 100
    patience: int = 5
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        for key in ("batch_size", "eval_batch_size", "max_epochs", "patience"):
            require(getattr(self, key) >= 1, key, "must be >= 1", getattr(self, key))


@dataclass
class NextQueryConfig:
    """The next_query (T1) task. ignore_padding: drop padded targets from the AR loss (B16 fix,
    docs/algorithms.md#b16; off = parity). exclude_padding_from_ranking: padding is never a ranked
    candidate. sampled_softmax: number of uniform negatives per batch added to the batch's targets
    (0 = full softmax).
    head: the T1 output head (``querylearn.models.heads``): "softmax" (the paper's linear head),
    "tied" (output weights = the input query vectors), "copy" (softmax mixed with a copy
    distribution over the user's own earlier queries by a learnt gate), "tied-copy" (both).
    generator_aux: λ of the auxiliary term of the copy heads, loss = CE(mixture) + λ · CE(the
    softmax generator alone), so the encoder keeps learning what the plain head teaches it
    (docs/algorithms.md#next-query-heads; 0 = the mixture's CE alone; no effect on other heads).
    copy_grad: "full" (the copy gate and attention back-propagate into the encoder and the query
    vectors) or "head" (they read both detached: only the gate, W_q and the recency bias learn
    from the copy path, the encoder from the generator)."""

    ignore_padding: bool = False
    exclude_padding_from_ranking: bool = True
    sampled_softmax: int = 0
    head: Literal["softmax", "tied", "copy", "tied-copy"] = "softmax"
    generator_aux: float = 1.0
    copy_grad: Literal["full", "head"] = "head"

    def __post_init__(self) -> None:
        lam = self.generator_aux
        require(lam >= 0, "generator_aux", "must be >= 0 (0 = no auxiliary term)", lam)
        require(
            self.sampled_softmax >= 0,
            "sampled_softmax",
            "must be >= 0 (0 = full softmax)",
            self.sampled_softmax,
        )


@dataclass
class TeraconConfig:
    """Knowledge retention and sampling (sections 4.9-4.11, 10.4), and the options that make the
    task masks channel-specific (docs/algorithms.md, TERACON "Mechanism options"; defaults chosen
    from the measurements in docs/benchmarks-train.md, "TERACON mechanism").

    alpha: retention weight (0 = the no-retention ablation). rho_mode: "relation" (Eq. 14-15) or
    "all" (rho = 1, retention on every user of the batch). min_kr_samples: floor of the retained
    subset per past task and batch (official: 1, fixes B5; default 16). min_rho: floor of rho (0 =
    parity).
    teacher_s: "annealed" (parity, B8: teacher, student past-task passes and rho at the annealed
    s_b) or "smax" (all three at smax, the scale the past tasks are evaluated at). masks:
    "relation" or "plain" (ablation). mask_reg: weight c of the HAT-style mask-sparsity term
    c · mean(m^t) on the learning task's masks at s_b (default 0 as the revised code; the original
    code used 0.75 at T1); mask_reg_tasks: "first" (T1 only, as the original code) or
    "all" (every task). emb_init: "uniform" (parity: U(model.task_emb_low, model.task_emb_high))
    or "symmetric" (U(-a, a), a = (high - low) / 2, so tanh(s e) has both signs across channels).
    relation_init: "official" (default, parity: relation weights N(0, 0.01²), bias 0.1, so every
    relation-aware mask restarts at σ(0.1 s) on every channel) or "identity" (own-task weight 1, bias
    0: a task's relation-aware mask starts as σ(s tanh(s e^t)), keeping the channels its plain mask
    switched off; a new task's mask is then exactly 1 at smax). The defaults that differ from
    the official revised code are min_kr_samples (16; official 1) and freeze ("shared"; official
    "none").
    kr_logits: "full" (parity: MSE over every logit of a past head) or "sampled" (MSE over
    ``kr_classes`` uniformly drawn classes per past task and batch, for heads with more classes;
    bounds the memory of retention on a large next_query vocabulary).
    checkpoint_students: recompute each past task's student pass in backward instead of keeping
    its activations (same gradients; the first batch of a task, where rho = 0.9 for every past
    task, otherwise holds one full forward per past task).
    rho_mode "fixed": rho = ``rho_fixed`` for every past task and batch (uniform sampling at one
    rate, the control of ``querylearn experiment sampling``).
    freeze: what stops training after T1: "none" (parity: the official code trains every parameter
    at every task), "embedding" (the item embedding and the input projection, if any) or "shared"
    (default: those and every LayerNorm, ``UserEncoder.shared_modules``, what HAT and CONURE freeze;
    docs/benchmarks-train.md, "TERACON with frozen shared modules").
    """

    alpha: float = 0.7
    rho_init: float = 0.9
    rho_sharpness: float = 6.0
    rho_mode: Literal["relation", "all", "fixed"] = "relation"
    rho_fixed: float = 0.1
    min_kr_samples: int = 16
    min_rho: float = 0.0
    teacher_s: Literal["annealed", "smax"] = "annealed"
    masks: Literal["relation", "plain"] = "relation"
    mask_reg: float = 0.0
    mask_reg_tasks: Literal["first", "all"] = "first"
    emb_init: Literal["uniform", "symmetric"] = "uniform"
    relation_init: Literal["official", "identity"] = "official"
    kr_logits: Literal["full", "sampled"] = "full"
    kr_classes: int = 1024
    cos_eps: float = 1e-6
    checkpoint_students: bool = True
    freeze: Literal["none", "embedding", "shared"] = "shared"

    def __post_init__(self) -> None:
        require(
            self.min_kr_samples >= 1,
            "min_kr_samples",
            "must be >= 1 (0 gives empty retention batches, bug B5)",
            self.min_kr_samples,
        )
        require(self.alpha >= 0, "alpha", "must be >= 0", self.alpha)
        require(self.kr_classes >= 1, "kr_classes", "must be >= 1", self.kr_classes)
        require(0.0 <= self.min_rho <= 1.0, "min_rho", "must lie in [0, 1]", self.min_rho)
        require(self.mask_reg >= 0, "mask_reg", "must be >= 0", self.mask_reg)
        require(0.0 < self.rho_fixed <= 1.0, "rho_fixed", "must lie in (0, 1]", self.rho_fixed)


@dataclass
class ConureConfig:
    """CONURE (docs/algorithms.md#conure). prune: fraction p of each conv tensor's *free* entries
    released after every task (0.7 as in CONURE's official code); task t keeps (Π_{j<t} p)(1 - p) of
    the whole tensor."""

    prune: float = 0.7

    def __post_init__(self) -> None:
        require(0.0 < self.prune < 1.0, "prune", "must lie in (0, 1)", self.prune)


@dataclass
class HatConfig:
    """HAT (docs/algorithms.md#hat). reg: attention regulariser weight c; compensation: scale the task
    embedding gradient by (smax/s)(cosh(clamp(s e, ±clamp_s)) + 1)/(cosh(e) + 1)."""

    reg: float = 0.75
    compensation: bool = True
    clamp_s: float = 50.0

    def __post_init__(self) -> None:
        require(self.reg >= 0, "reg", "must be >= 0", self.reg)


@dataclass
class TrainConfig:
    """Everything ``train-sequence`` needs besides the data and output paths.

    t1 applies to the first task, t2 to the second, later to the third and every later one
    (4.13: T1 batch 32 / lr 1e-3 / 10 epochs; T2 batch 1024 / lr 1e-3; T3+ lr 1e-4).
    selection_metric: validation metric for early stopping; "accuracy" = hit@1 (parity, B24),
    "task" = each task's own headline metric. smax: mask scale at evaluation and the end of the
    annealing (4.5); given to every model the run creates, which stores it (``UserEncoder.smax``).
    task_emb_clamp: clamp of task embeddings after each step (4.7).
    task_overrides: per-task changes to the phase settings, keyed by the task's 1-based position in
    the sequence: ``{"4" = {batch_size = 32}}`` gives the 4th task the ``later`` settings with batch
    32 (the official recipe's T3 batch 1024 but T4/T5 batch 32). Keys of a value: PhaseConfig's.
    precision: "fp32" (default) or "bf16" (torch.autocast for training forward passes; several
    times faster on CPUs with AVX512-BF16/AMX and on GPUs; evaluation always runs in fp32).
    multi_target_batching: training batches of multi_target tasks (docs/train-sequence.md, "Per-user
    batching"): "user" (default: shuffled users, every user's train targets in the same step, about
    batch_size rows per step; each user encoded once per epoch; same loss, the mean CE over the
    step's pairs) or "pair" (parity with the official code: shuffled (user, target) rows,
    batch_size rows per step).
    length_buckets: training batches hold rows of similar sequence length (sorted within windows of
    50 batches, batch order shuffled; ``querylearn.continual.buckets``) instead of random rows; with
    ``model.padding = "exact"`` their common padding is then not computed. Off = parity.
    mmap_threshold_mb: glibc malloc serves blocks of at least this many MiB with mmap, so freed
    activations return to the OS instead of fragmenting the heap (``querylearn.continual.allocator``;
    0 = glibc's dynamic default; no effect on other C libraries). Changes memory and time (each
    large allocation then faults its pages in afresh), never results.
    """

    strategy: str = "teracon"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    tasks: tuple[str, ...] = ()
    selection_metric: str = "accuracy"
    drop_last: bool = False
    length_buckets: bool = False
    mmap_threshold_mb: int = 0
    smax: float = DEFAULT_SMAX
    task_emb_clamp: float = 6.0
    with_single: bool = False
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    multi_target_batching: Literal["pair", "user"] = "user"
    model: ModelConfig = field(default_factory=ModelConfig)
    t1: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(lr=1e-3, batch_size=32, eval_batch_size=512, max_epochs=10)
    )
    t2: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(lr=1e-3, batch_size=1024, eval_batch_size=1024, max_epochs=100)
    )
    later: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(lr=1e-4, batch_size=1024, eval_batch_size=1024, max_epochs=100)
    )
    next_query: NextQueryConfig = field(default_factory=NextQueryConfig)
    teracon: TeraconConfig = field(default_factory=TeraconConfig)
    conure: ConureConfig = field(default_factory=ConureConfig)
    hat: HatConfig = field(default_factory=HatConfig)
    task_overrides: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(
            self.selection_metric in SELECTION_METRICS,
            "selection_metric",
            f"must be one of {', '.join(SELECTION_METRICS)}",
            self.selection_metric,
        )
        require(self.smax > 0, "smax", "must be > 0", self.smax)
        require(self.task_emb_clamp > 0, "task_emb_clamp", "must be > 0", self.task_emb_clamp)
        require(
            self.mmap_threshold_mb >= 0,
            "mmap_threshold_mb",
            "must be >= 0 (0 = glibc's default)",
            self.mmap_threshold_mb,
        )
        require(self.threads >= 0, "threads", "must be >= 0 (0 = leave torch's default)", self.threads)
        types = {f.name: f.type for f in fields(PhaseConfig)}  # "float" / "int" (postponed annotations)
        for key, table in self.task_overrides.items():
            where = f"task_overrides.{key}"
            require(key.isdigit() and int(key) >= 1, where, "key must be a 1-based task position", key)
            require(isinstance(table, dict), where, "must be a table of phase keys", table)
            for name, value in table.items():
                require(name in types, f"{where}.{name}", f"unknown key; valid: {', '.join(types)}", name)
                is_int = types[name] == "int"
                ok = not isinstance(value, bool) and isinstance(value, int if is_int else (int, float))
                rule = "expected an integer" if is_int else "expected a number"
                require(ok, f"{where}.{name}", rule, value)
                if not is_int:
                    table[name] = float(value)
            self.phase(int(key) - 1)  # PhaseConfig checks the values

    def phase(self, position: int) -> PhaseConfig:
        """Optimisation settings of the task at 0-based ``position`` in the sequence: t1, t2 or later,
        then ``task_overrides[str(position + 1)]`` if given."""
        base = self.t1 if position == 0 else self.t2 if position == 1 else self.later
        table = self.task_overrides.get(str(position + 1))
        if not table:
            return base
        try:
            return replace(base, **table)
        except ConfigError as exc:
            raise ConfigError(f"task_overrides.{position + 1}.{exc}") from None
