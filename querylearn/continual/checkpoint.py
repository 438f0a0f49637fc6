"""Checkpoints: tensors in safetensors (no pickle) + a JSON sidecar with everything else.

``NN-NAME.safetensors`` holds the model state dict (keys as in ``UserEncoder.state_dict()``) and the
strategy's tensors under ``strategy.``; ``NN-NAME.json`` (kind "checkpoint") holds the model
config, the heads in task order, the masking mode, the evaluation scale ``smax``, the task sequence
seen so far, the resolved train config and the run history (R rows, timings). Both files are
written atomically (``querylearn.artifacts.atomic_write``); the JSON is written last, so its
presence marks a complete checkpoint. The JSON records the SHA-256 of the tensor file
(``tensors_sha256``); loading verifies it and refuses unreadable files and non-finite weights.
Checkpoints written before the hash existed load without the hash check. The optimizer is created
fresh for every task (docs/algorithms.md#model-growth), so no optimizer state is stored.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from querylearn.artifacts import atomic_write, check_manifest, file_sha256, read_json, write_json
from querylearn.errors import ArtifactError
from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder

KIND = "checkpoint"
SCHEMA_VERSION = 1


def save_checkpoint(
    stem: str | Path, model: UserEncoder, meta: dict, strategy_state: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write ``stem.safetensors`` then ``stem.json``; returns the JSON path."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for k, v in (strategy_state or {}).items():
        tensors[f"strategy.{k}"] = v.detach().cpu().contiguous()
    digest: list[str] = []

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp))
        digest.append(file_sha256(tmp))

    atomic_write(stem.with_suffix(".safetensors"), write)
    full = {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "tensors": stem.with_suffix(".safetensors").name,
        "tensors_sha256": digest[0],
        "vocab_size": int(model.item_embedding.num_embeddings),
        "embedding_dim": int(model.embedding_dim),
        "masking": model.masking,
        "smax": model.smax,
        "heads": [[name, model.heads.n_classes(name)] for name in model.task_names],
        "next_query_task": model.next_query_task,
        "next_query_head": model.next_query_head,
        "model_config": {
            **{k: getattr(model.config, k) for k in model.config.__dataclass_fields__},
            "dilations": list(model.config.dilations),
        },
        **meta,
    }
    path = stem.with_suffix(".json")
    write_json(path, full)
    return path


def read_checkpoint_meta(path: str | Path) -> dict:
    path = Path(path)
    meta = read_json(path)
    check_manifest(path, meta, kind=KIND, schema_version=SCHEMA_VERSION)
    return meta


def checkpoint_smax(meta: dict) -> float:
    """The model's evaluation scale; checkpoints written before it travelled with the model hold it
    only in the stored train config."""
    return float(meta["smax"] if "smax" in meta else meta["config"]["smax"])


def read_checkpoint_tensors(path: Path, meta: dict) -> dict[str, torch.Tensor]:
    """The verified tensors of the checkpoint whose JSON is ``path``.

    Raises ArtifactError (one line) when the file's SHA-256 differs from ``meta['tensors_sha256']``
    (absent in checkpoints written before it was recorded: those skip this check), when the file
    is not a readable safetensors file (e.g. truncated), or when a floating tensor holds NaN/inf.
    """
    tensor_path = path.parent / meta["tensors"]
    fix = (
        "restore the file from a backup or retrain "
        "(querylearn train-sequence --resume RUN re-creates later tasks)"
    )
    expected = meta.get("tensors_sha256")
    if expected is not None and file_sha256(tensor_path) != expected:
        raise ArtifactError(
            f"{tensor_path}: the tensor file changed after it was written (SHA-256 differs from "
            f"tensors_sha256 in {path.name}); {fix}"
        )
    try:
        tensors = load_file(str(tensor_path))
    except (SafetensorError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"{tensor_path}: not a readable safetensors file ({first}); {fix}") from None
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ArtifactError(f"{tensor_path}: tensor '{key}' holds NaN or infinite values; {fix}")
    return tensors


def load_checkpoint(
    path: str | Path, device: torch.device | str = "cpu"
) -> tuple[UserEncoder, dict, dict[str, torch.Tensor]]:
    """Rebuild the model from a checkpoint JSON (grow with add_task, then load strictly).

    Returns (model, meta, strategy_state).
    """
    path = Path(path)
    meta = read_checkpoint_meta(path)
    tensor_path = path.parent / meta["tensors"]
    if not tensor_path.is_file():
        raise ArtifactError(
            f"{tensor_path}: checkpoint tensors missing "
            "(the run was interrupted while saving; rerun with --resume)"
        )
    cfg = dict(meta["model_config"])
    cfg["dilations"] = tuple(cfg["dilations"])
    cfg.setdefault("padding", "parity")  # saved before model.padding existed
    model = UserEncoder(
        int(meta["vocab_size"]),
        ModelConfig(**cfg),
        masking=meta["masking"],
        embedding_dim=int(meta["embedding_dim"]),
        smax=float(checkpoint_smax(meta)),
        next_query_task=meta.get("next_query_task"),  # absent before the head options: softmax
        next_query_head=meta.get("next_query_head", "softmax"),
    )
    for name, n_classes in meta["heads"]:
        model.add_task(name, int(n_classes))
    tensors = read_checkpoint_tensors(path, meta)
    strategy_state = {k[len("strategy.") :]: v for k, v in tensors.items() if k.startswith("strategy.")}
    state = {k: v for k, v in tensors.items() if not k.startswith("strategy.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"{tensor_path}: does not match the model described in {path.name} ({str(exc).splitlines()[0]})"
        ) from None
    return model.to(device), meta, strategy_state
