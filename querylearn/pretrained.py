"""A trained user encoder as a self-contained folder, loaded the way the ecosystem loads models.

``export_model(RUN, DIR, task=...)`` (CLI ``querylearn export-model``) writes::

    DIR/config.json          kind "querylearn-user-encoder", schema_version 1: model config, heads,
                             masking, smax, default task, the normalisation rule and sequence length,
                             where the weights came from, the unseen-query rule
    DIR/model.safetensors    the model's state dict (keys of querylearn.models.user_encoder.UserEncoder)
    DIR/vocab.json           the dataset's query vocabulary (ids of the input embedding)
    DIR/query_table/         the embed-init table the run started from (vectors.npy, vocab.json,
                             meta.json = its provenance, PCA files); only when the run used one
    DIR/query_map.safetensors  the linear map table space -> trained input space (querymap.py);
                             only when the table's source embeds text (kobert, hf, e5)

``UserEncoder.from_pretrained(DIR)`` rebuilds the model (constructor + ``add_task`` + a strict
``load_state_dict``) and ``encode(histories, task=...)`` turns raw query histories into user vectors,
exactly as ``export-users`` does for the dataset's users: each query is normalised with the dataset's
rule (``querylearn.nfc-v1``), queries empty after it are dropped, the last ``seq_len`` queries are kept
(oldest first, left-padded), and the output is the last position's hidden state under the task's mask
at s = smax (docs/algorithms.md#readout).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from querylearn import __version__
from querylearn.artifacts import atomic_write, check_manifest, read_json, write_json
from querylearn.continual.checkpoint import load_checkpoint, read_checkpoint_meta
from querylearn.data.dataset import load_manifest
from querylearn.data.normalize import RULE, normalize_query
from querylearn.data.vocab import PAD_ID, UNK_ID, QueryVocab
from querylearn.errors import ArtifactError, QuerylearnError
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder as EncoderModule
from querylearn.querymap import (
    UnseenQueryEmbedder,
    can_embed_text,
    fit_linear_map,
    load_map,
    save_map,
)
from querylearn.runinfo import read_run_paths

KIND = "querylearn-user-encoder"
SCHEMA_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
TABLE_DIR = "query_table"
MAP_FILE = "query_map.safetensors"
UNSEEN = ("map", "unk")
_TABLE_FILES = ("meta.json", "vocab.json", "vectors.npy", "projection_mean.npy", "projection_components.npy")


# ---- picking the model of a run -------------------------------------------------------------------
def pick_checkpoint(run_dir: str | Path, task: str | None = None) -> tuple[Path, str]:
    """The checkpoint whose model answers for ``task`` (default: the last task learnt): the last
    checkpoint holding the task's head (for SinMo, the task's own model)."""
    run_dir = Path(run_dir)
    paths = sorted((run_dir / "checkpoints").glob("*.json"))
    if not paths:
        raise ArtifactError(
            f"{run_dir}: no checkpoints; train first with 'querylearn train-sequence --out {run_dir}'"
        )
    last = read_checkpoint_meta(paths[-1])
    seen = list(last["tasks_seen"])
    task = task or seen[-1]
    if task not in seen:
        raise QuerylearnError(f"--task {task}: the run has learnt {', '.join(seen)}")
    if "task_checkpoints" in last:
        return paths[-1].parent / last["task_checkpoints"][task], task
    for path in reversed(paths):
        if any(name == task for name, _ in read_checkpoint_meta(path)["heads"]):
            return path, task
    raise ArtifactError(f"{run_dir}/checkpoints: no checkpoint holds task {task}")


def _model_config(model: EncoderModule) -> dict:
    cfg = {k: getattr(model.config, k) for k in model.config.__dataclass_fields__}
    cfg["dilations"] = list(model.config.dilations)
    return cfg


def _build_module(config: dict, vocab_size: int, weights: dict[str, torch.Tensor]) -> EncoderModule:
    """Constructor + add_task per head + strict load (the same growth path as checkpoints)."""
    cfg = dict(config["model_config"])
    cfg["dilations"] = tuple(cfg["dilations"])
    cfg.setdefault("padding", "parity")  # saved before model.padding existed
    model = EncoderModule(
        vocab_size,
        ModelConfig(**cfg),
        masking=config["masking"],
        embedding_dim=int(config["embedding_dim"]),
        smax=float(config["smax"]),
    )
    for name, n_classes in config["heads"]:
        model.add_task(name, int(n_classes))
    model.load_state_dict(weights, strict=True)
    return model.eval()


# ---- the result of encoding --------------------------------------------------------------------
@dataclass
class EncodedUsers:
    """User vectors and what happened to their queries. ``vectors`` float32 [N, C]."""

    vectors: np.ndarray
    task: str
    n_positions: int  # query positions fed to the model (after normalisation and truncation)
    n_unseen_mapped: int  # positions whose query was outside the vocabulary and got a mapped vector
    n_unseen_unk: int  # positions whose query was outside the vocabulary and became <unk>
    unseen_mapped: list[str] = field(default_factory=list)  # distinct mapped queries (first-seen order)
    n_empty_histories: int = 0  # users with no usable query (all-padding input)

    def describe(self) -> dict:
        return {
            "positions": self.n_positions,
            "unseen_mapped_positions": self.n_unseen_mapped,
            "unseen_unk_positions": self.n_unseen_unk,
            "unseen_mapped_queries": len(self.unseen_mapped),
            "empty_histories": self.n_empty_histories,
        }


class UserEncoder:
    """A trained user encoder loaded from an ``export-model`` folder.

    Attributes: ``module`` (the torch ``querylearn.models.user_encoder.UserEncoder``), ``vocab``
    (QueryVocab), ``config`` (config.json), ``tasks``, ``default_task``, ``seq_len``, ``smax``, ``dim``.
    """

    def __init__(
        self,
        module: EncoderModule,
        vocab: QueryVocab,
        config: dict,
        *,
        path: Path | None = None,
        table_dir: Path | None = None,
        unseen: UnseenQueryEmbedder | None = None,
        device: str | torch.device = "cpu",
    ):
        self.module = module.to(device).eval()
        self.vocab = vocab
        self.config = config
        self.path = path
        self.table_dir = table_dir
        self.device = torch.device(device)
        self._unseen = unseen

    # ---- loading ----------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, device: str | torch.device = "cpu", text_model: str | None = None
    ) -> UserEncoder:
        """Load DIR written by ``export-model`` / ``save_pretrained``. ``text_model``: a local folder
        with the embed-init source model, when it moved since the table was built."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_dir():
            raise ArtifactError(f"{path}: no such model folder (write one with 'querylearn export-model')")
        config = read_json(path / CONFIG_FILE)
        check_manifest(path / CONFIG_FILE, config, kind=KIND, schema_version=SCHEMA_VERSION)
        norm = config["normalisation"]["rule"]
        if norm != RULE:
            raise ArtifactError(
                f"{path / CONFIG_FILE}: normalisation {norm!r} but this querylearn applies {RULE!r}; "
                "use the querylearn version that exported the model"
            )
        vocab = QueryVocab.load(path / VOCAB_FILE)
        if len(vocab) != int(config["vocab_size"]):
            raise ArtifactError(
                f"{path / VOCAB_FILE}: {len(vocab)} queries, config.json says {config['vocab_size']}"
            )
        if not (path / WEIGHTS_FILE).is_file():
            raise ArtifactError(f"{path / WEIGHTS_FILE}: file not found")
        try:
            module = _build_module(config, len(vocab), load_file(str(path / WEIGHTS_FILE)))
        except RuntimeError as exc:
            raise ArtifactError(
                f"{path / WEIGHTS_FILE}: does not match {CONFIG_FILE} ({str(exc).splitlines()[0]})"
            ) from None
        unseen = None
        if config["unseen_queries"]["rule"] == "map":
            unseen = UnseenQueryEmbedder(path / TABLE_DIR, load_map(path / MAP_FILE), text_model=text_model)
        table_dir = path / TABLE_DIR if (config.get("query_table") or {}).get("dir") else None
        return cls(module, vocab, config, path=path, table_dir=table_dir, unseen=unseen, device=device)

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config.json, model.safetensors, vocab.json (+ query_table/ and query_map.safetensors
        when this encoder maps unseen queries). Returns ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.table_dir is not None and self.table_dir.resolve() != (path / TABLE_DIR).resolve():
            copy_table(self.table_dir, path / TABLE_DIR)
        if self._unseen is not None:
            save_map(path / MAP_FILE, self._unseen.map)
        else:
            (path / MAP_FILE).unlink(missing_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        atomic_write(path / WEIGHTS_FILE, lambda tmp: save_file(state, str(tmp)))
        self.vocab.save(path / VOCAB_FILE)
        write_json(path / CONFIG_FILE, self.config)
        return path

    # ---- properties -------------------------------------------------------------------------------
    @property
    def tasks(self) -> list[str]:
        return list(self.module.task_names)

    @property
    def default_task(self) -> str:
        return str(self.config["default_task"])

    @property
    def seq_len(self) -> int:
        return int(self.config["normalisation"]["seq_len"])

    @property
    def smax(self) -> float:
        return float(self.config["smax"])

    @property
    def dim(self) -> int:
        return int(self.module.config.channels)

    @property
    def maps_unseen_queries(self) -> bool:
        return self._unseen is not None

    # ---- queries ----------------------------------------------------------------------------------
    def input_vectors(self) -> np.ndarray:
        """The trained input embedding [V, E] float32 (row i = vocabulary id i)."""
        return self.module.item_embedding.weight.detach().float().cpu().numpy()

    def unseen_query_vectors(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unseen queries -> (vectors [N, E] in the trained input space, empty [N] bool).

        Raises QuerylearnError when the model's table embeds no text (random init)."""
        if self._unseen is None:
            raise QuerylearnError(
                f"{self.path or 'this model'}: its query table is random (or absent), so a query outside "
                "the vocabulary has no vector; train from a text table (embed-init --source kobert|hf|e5)"
            )
        return self._unseen.embed(queries)

    # ---- users ------------------------------------------------------------------------------------
    def sequences(
        self, histories: list[list[str]], *, unseen: str = "map", normalized: bool = False
    ) -> tuple[np.ndarray, list[str], int]:
        """Histories (oldest first) -> (ids int64 [N, seq_len] left-padded, distinct unseen queries,
        unseen positions). Unseen query j gets id V + j when ``unseen == "map"`` and the model can map
        it, else ``<unk>``."""
        if unseen not in UNSEEN:
            raise QuerylearnError(f"--unseen {unseen!r}: choose one of {', '.join(UNSEEN)}")
        index = self.vocab.index
        mapping = unseen == "map" and self._unseen is not None
        n_vocab = len(self.vocab)
        extra: dict[str, int] = {}
        norm_cache: dict[str, str] = {}
        seqs = np.full((len(histories), self.seq_len), PAD_ID, dtype=np.int64)
        n_unseen = 0
        for row, history in enumerate(histories):
            if isinstance(history, str):
                raise QuerylearnError(f"history {row} is a string; pass a list of queries per user")
            if normalized:
                queries = [q for q in history if q]
            else:
                queries = []
                for q in history:
                    n = norm_cache.get(q)
                    if n is None:
                        n = norm_cache[q] = normalize_query(str(q))
                    if n:
                        queries.append(n)
            queries = queries[-self.seq_len :]
            ids = []
            for q in queries:
                i = index.get(q)
                if i is None or i == PAD_ID:
                    n_unseen += 1
                    i = n_vocab + extra.setdefault(q, len(extra)) if mapping else UNK_ID
                ids.append(i)
            if ids:
                seqs[row, self.seq_len - len(ids) :] = ids
        return seqs, list(extra), n_unseen

    @torch.no_grad()
    def encode_detailed(
        self,
        histories: list[list[str]],
        task: str | None = None,
        *,
        unseen: str = "map",
        batch_size: int = 1024,
        normalized: bool = False,
    ) -> EncodedUsers:
        """Like :meth:`encode`, with counts of unseen queries (mapped or ``<unk>``)."""
        task = task or self.default_task
        if task not in self.tasks:
            raise QuerylearnError(f"task {task!r}: this model holds {', '.join(self.tasks)}")
        seqs, extra, n_unseen = self.sequences(histories, unseen=unseen, normalized=normalized)
        module = self.module
        n_unk_unseen = n_unseen
        if extra:
            vectors, empty = self.unseen_query_vectors(extra)
            vectors[empty] = self.input_vectors()[UNK_ID]  # nothing to embed: the trained <unk> row
            module = self._with_extra_rows(vectors)
            mapped_ids = len(self.vocab) + np.flatnonzero(~empty)
            n_mapped = int(np.isin(seqs, mapped_ids).sum())
            n_unk_unseen = n_unseen - n_mapped
            mapped = [q for q, e in zip(extra, empty, strict=True) if not e]
        else:
            n_mapped, mapped = 0, []
        masks = module.task_masks(task, self.smax)
        out = np.zeros((len(seqs), self.dim), dtype=np.float32)
        for start in range(0, len(seqs), batch_size):
            ids = torch.as_tensor(seqs[start : start + batch_size], device=self.device)  # [b, L]
            out[start : start + len(ids)] = (
                module.encode(ids, masks, task=task).float().cpu().numpy()
            )  # [b, C]
        return EncodedUsers(
            out,
            task,
            int((seqs != PAD_ID).sum()),
            n_mapped,
            n_unk_unseen,
            mapped,
            int((seqs == PAD_ID).all(axis=1).sum()),
        )

    def encode(
        self,
        histories: list[list[str]],
        task: str | None = None,
        *,
        unseen: str = "map",
        batch_size: int = 1024,
    ) -> np.ndarray:
        """Raw query histories (one list per user, oldest first) -> user vectors float32 [N, C].

        ``task``: whose mask to use (default: the exported task). ``unseen``: "map" (queries outside
        the vocabulary get a mapped vector when the model's table embeds text, else ``<unk>``) or
        "unk" (always ``<unk>``, as ``prepare`` does)."""
        return self.encode_detailed(histories, task, unseen=unseen, batch_size=batch_size).vectors

    def _with_extra_rows(self, rows: np.ndarray) -> EncoderModule:
        """The same model with ``rows`` [n, E] appended to its input embedding (ids V..V+n-1)."""
        state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        key = "item_embedding.weight"
        state[key] = torch.cat([state[key], torch.as_tensor(rows, dtype=state[key].dtype)])
        return _build_module(self.config, int(state[key].shape[0]), state).to(self.device)


def copy_table(src: Path, dst: Path) -> None:
    """Copy an embed-init table's files (the table and its provenance) into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in _TABLE_FILES:
        if (src / name).is_file():
            atomic_write(dst / name, lambda tmp, f=src / name: shutil.copyfile(f, tmp))
        else:
            (dst / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class ExportedModel:
    """What ``export_model`` wrote. ``unseen_rule``: "map" or "unk"; ``map_fit``: the map's fit numbers."""

    path: Path
    task: str
    tasks: list[str]
    dim: int
    vocab_size: int
    unseen_rule: str
    map_fit: dict | None


def export_model(
    run_dir: str | Path, out_dir: str | Path, *, task: str | None = None, ridge: float = 1e-3
) -> ExportedModel:
    """Write the self-contained model folder for ``task``'s model of a train-sequence run."""
    from querylearn.embeddings import load_embedding_table

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    paths = read_run_paths(run_dir)
    ckpt, task = pick_checkpoint(run_dir, task)
    module, meta, _ = load_checkpoint(ckpt)
    manifest = load_manifest(paths.data)
    vocab = QueryVocab.load(paths.data / VOCAB_FILE)
    if len(vocab) != module.item_embedding.num_embeddings:
        raise ArtifactError(
            f"{paths.data}: vocabulary size {len(vocab)} differs from the checkpoint's "
            f"{module.item_embedding.num_embeddings}"
        )
    table_meta = None
    unseen: UnseenQueryEmbedder | None = None
    has_table = paths.embeddings is not None and (paths.embeddings / "meta.json").is_file()
    if has_table:
        table = load_embedding_table(paths.embeddings)
        table.check_vocab(vocab)
        table_meta = table.meta
        if can_embed_text(table_meta):
            trained = module.item_embedding.weight.detach().float().cpu().numpy()
            fitted = fit_linear_map(np.asarray(table.vectors)[2:], trained[2:], ridge=ridge)
            unseen = UnseenQueryEmbedder(paths.embeddings, fitted)
    elif paths.embeddings is not None:  # a bare vectors.npy folder: no provenance, no text source
        table_meta = {"source": "vectors.npy (no meta.json)"}
    config = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "querylearn_version": __version__,
        "architecture": "NextItNet user encoder with task masks (querylearn.models.user_encoder.UserEncoder)",
        "vocab_size": len(vocab),
        "embedding_dim": int(module.embedding_dim),
        "hidden_dim": int(module.config.channels),
        "masking": module.masking,
        "smax": float(module.smax),
        "model_config": _model_config(module),
        "heads": [[name, int(module.heads.n_classes(name))] for name in module.task_names],
        "default_task": task,
        "pooling": "last-position",
        "normalisation": {
            "rule": RULE,
            "seq_len": int(manifest["seq_len"]),
            "history": "queries oldest first; empty after normalisation dropped; the last seq_len kept; "
            "left-padded with <pad> (id 0)",
        },
        "unseen_queries": {
            "rule": "map" if unseen is not None else "unk",
            "map": None if unseen is None else {"file": MAP_FILE, **unseen.map.describe()},
        },
        "query_table": None
        if table_meta is None
        else {
            "dir": TABLE_DIR if has_table else None,
            "source": table_meta.get("source"),
            "method": table_meta.get("method"),
            "model": table_meta.get("model"),
            "dim": table_meta.get("dim"),
        },
        "origin": {
            "run_dir": str(run_dir.resolve()),
            "checkpoint": ckpt.name,
            "strategy": meta.get("strategy"),
            "tasks_seen": meta.get("tasks_seen"),
            "dataset": {
                "source": manifest.get("source"),
                "synthetic": manifest.get("synthetic"),
                "n_users": manifest.get("n_users"),
            },
        },
    }
    encoder = UserEncoder(
        module, vocab, config, path=out_dir, table_dir=paths.embeddings if has_table else None, unseen=unseen
    )
    encoder.save_pretrained(out_dir)
    return ExportedModel(
        out_dir,
        task,
        list(module.task_names),
        int(module.config.channels),
        len(vocab),
        config["unseen_queries"]["rule"],
        config["unseen_queries"]["map"],
    )
