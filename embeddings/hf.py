"""The ``hf`` source: any BERT-style model folder (or cached hub id) with its own tokenizer.

Tokenisation is the folder's ``AutoTokenizer`` (``add_special_tokens=False`` for the content ids; the
tokenizer's ``cls_token_id`` / ``sep_token_id`` wrap the contextual forward pass when it has them).
Poolings are the same as ``kobert`` (:mod:`querylearn.embeddings.pooling`).
"""

from __future__ import annotations

import numpy as np

from querylearn.embeddings.base import TokenizedBatch
from querylearn.embeddings.hub import load_bert_model, resolve_model, weight_file
from querylearn.errors import QuerylearnError

HUB_PATTERNS = ["*.json", "*.txt", "*.model", "model.safetensors", "pytorch_model.bin"]
_MARKS = ("##", "\u2581", "\u0120")  # WordPiece continuation, sentencepiece word start, GPT-2 space


class HFTokenizer:
    """:class:`~querylearn.embeddings.base.SubwordEncoder` over a transformers tokenizer."""

    def __init__(self, tokenizer, name: str):
        self.tok = tokenizer
        self.name = name
        self.unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else -1
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.vocab_size = len(tokenizer)

    def encode_batch(self, texts: list[str]) -> TokenizedBatch:
        if not texts:
            return TokenizedBatch.from_lists([])
        enc = self.tok(list(texts), add_special_tokens=False)["input_ids"]
        return TokenizedBatch.from_lists(enc)

    def piece_char_lengths(self) -> np.ndarray:
        pieces = self.tok.convert_ids_to_tokens(list(range(self.vocab_size)))
        out = np.empty(self.vocab_size, dtype=np.int64)
        for i, p in enumerate(pieces):
            p = p or ""
            for m in _MARKS:
                p = p.replace(m, "")
            out[i] = len(p)
        return out

    def describe(self) -> dict:
        return {
            "kind": "hf-autotokenizer",
            "class": type(self.tok).__name__,
            "vocab_size": self.vocab_size,
            "do_lower_case": getattr(self.tok, "do_lower_case", None),
            "special_ids": {"unk": self.unk_id, "pad": self.pad_id, "cls": self.cls_id, "sep": self.sep_id},
        }


def load_hf(name_or_path: str, *, pooling: str, include_special: bool, batch_size: int, max_length: int):
    """The ``hf`` source: ``AutoTokenizer`` + ``AutoModel`` from one folder or cached hub id."""
    from transformers import AutoTokenizer

    from querylearn.embeddings.pooling import BertEmbedder

    resolved = resolve_model(name_or_path, required=("config.json",), patterns=HUB_PATTERNS, what="the model")
    try:
        tok = AutoTokenizer.from_pretrained(str(resolved.path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuerylearnError(
            f"--model {name_or_path}: cannot load its tokenizer from {resolved.path} ({first})"
        ) from None
    model = load_bert_model(resolved, auto=True)
    if not hasattr(model.config, "hidden_size"):
        raise QuerylearnError(
            f"--model {name_or_path}: {type(model).__name__} has no hidden_size; use a BERT-style encoder"
        )
    tokenizer = HFTokenizer(tok, name_or_path)
    files = [
        p.name
        for p in sorted(resolved.path.iterdir())
        if p.is_file() and p.suffix in (".json", ".txt", ".model")
    ]
    info = {
        "name_or_path": name_or_path,
        "resolved_path": str(resolved.path),
        "from_hub": resolved.from_hub,
        "revision": resolved.revision,
        "weights": weight_file(resolved.path),
        "sha256": resolved.file_hashes((weight_file(resolved.path), *files)),
        "class": type(model).__name__,
    }
    return BertEmbedder(
        tokenizer,
        model,
        pooling=pooling,
        include_special=include_special,
        batch_size=batch_size,
        max_length=max_length,
        model_info=info,
    )
