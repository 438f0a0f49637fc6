"""Find a model folder: a local path, or a Hugging Face hub id resolved through the local cache.

No network is assumed. A hub id is looked up with ``huggingface_hub``; with ``HF_HUB_OFFLINE`` /
``TRANSFORMERS_OFFLINE`` set (read at call time) only the local cache is used. Any failure becomes
one :class:`~querylearn.errors.QuerylearnError` line telling the user to pass a local folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from querylearn.artifacts import file_sha256
from querylearn.errors import QuerylearnError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class ResolvedModel:
    """A model folder on disk plus how it was found (``revision`` is the hub commit or ``None``)."""

    name_or_path: str
    path: Path
    from_hub: bool
    revision: str | None

    def file_hashes(self, names: tuple[str, ...]) -> dict[str, str]:
        """sha256 of each of ``names`` that exists in the folder (weights, tokenizer files)."""
        return {n: file_sha256(self.path / n) for n in names if (self.path / n).is_file()}


def hub_offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def looks_like_path(name: str) -> bool:
    """A hub id is ``owner/name``; anything with a leading ``/ . ~``, a backslash or 2+ slashes is a path."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") != 1


def resolve_model(
    name_or_path: str, *, required: tuple[str, ...], patterns: list[str], what: str
) -> ResolvedModel:
    """Return the local folder holding ``required`` files for ``name_or_path``.

    Raises QuerylearnError (one line) when the folder or a file is missing, or when a hub id is
    neither cached nor downloadable.
    """
    local = Path(name_or_path).expanduser()
    if local.exists() or looks_like_path(name_or_path):
        if not local.is_dir():
            raise QuerylearnError(
                f"--model {name_or_path}: no such folder (pass a folder with config.json, the weights and "
                f"the tokenizer files of {what})"
            )
        _check_files(local, required, name_or_path)
        return ResolvedModel(name_or_path, local.resolve(), False, None)
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(name_or_path, allow_patterns=patterns, local_files_only=hub_offline())
        )
    except Exception as exc:  # noqa: BLE001  (network, cache and hub errors all mean the same to the user)
        reason = type(exc).__name__
        raise QuerylearnError(
            f"cannot get '{name_or_path}' from the Hugging Face hub ({reason}: offline or not cached); "
            "download it where there is network and pass "
            f"--model /path/to/local/{name_or_path.split('/')[-1]}"
        ) from None
    _check_files(folder, required, name_or_path)
    revision = folder.name if folder.parent.name == "snapshots" else None
    return ResolvedModel(name_or_path, folder, True, revision)


def _check_files(folder: Path, required: tuple[str, ...], name: str) -> None:
    missing = [f for f in required if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise QuerylearnError(
            f"--model {name}: folder {folder} lacks {', '.join(missing)} (save the model with "
            "save_pretrained and put the tokenizer files next to it)"
        )


def weight_file(folder: Path) -> str:
    for w in WEIGHT_FILES:
        if (folder / w).is_file():
            return w
    raise QuerylearnError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})")


def load_bert_model(resolved: ResolvedModel, *, auto: bool = False):
    """Load ``BertModel`` (or ``AutoModel`` when ``auto``) from the folder, in eval mode, float32."""
    import torch
    from transformers import AutoModel, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one-line CLI output; the load takes a second

    cls = AutoModel if auto else BertModel
    try:
        model = cls.from_pretrained(str(resolved.path), local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QuerylearnError(
            f"--model {resolved.name_or_path}: cannot load the model from {resolved.path} ({first})"
        ) from None
    model.eval()
    return model.to(torch.float32)
