"""querylearn: continual universal user representations from Korean search queries."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("querylearn")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

from querylearn.errors import QuerylearnError  # noqa: E402

# The Python API (querylearn/api.py, docs/api.md), imported on first use so `import querylearn` stays light.
_API = (
    "ColdstartResult",
    "EmbeddedUsers",
    "EmbeddingTable",
    "EncodedUsers",
    "ExportedModel",
    "NeighbourResult",
    "PreparedDataset",
    "TrainResult",
    "UserEncoder",
    "UserVectors",
    "coldstart_eval",
    "embed_init",
    "embed_users",
    "export_model",
    "export_users",
    "prepare",
    "query_neighbours",
    "train_sequence",
    "user_neighbours",
)


def __getattr__(name: str):
    if name in _API:
        from querylearn import api

        return getattr(api, name)
    raise AttributeError(f"module 'querylearn' has no attribute {name!r}")


__all__ = ["QuerylearnError", "__version__", *_API]
