"""querylearn: continual universal user representations from Korean search queries."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("querylearn")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.1.0"

from querylearn.errors import QuerylearnError  # noqa: E402

__all__ = ["QuerylearnError", "__version__"]
