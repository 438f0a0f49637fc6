"""Typed exceptions. The CLI prints ``str(error)`` as one line and exits 1 (never a traceback)."""

from __future__ import annotations


class QuerylearnError(Exception):
    """Base class: a user-facing error whose message says what, where and what next."""


class DataError(QuerylearnError):
    """Bad input data: the message names the file, the row (1-based, header = row 1) and the fix."""

    def __init__(self, path: object, message: str, *, row: int | None = None, fix: str | None = None):
        where = f"{path}" if row is None else f"{path}, row {row}"
        text = f"{where}: {message}"
        if fix:
            text += f" (fix: {fix})"
        super().__init__(text)
        self.path = path
        self.row = row


class ConfigError(QuerylearnError):
    """A configuration key or value is unknown or invalid."""


class ArtifactError(QuerylearnError):
    """An artifact directory is missing files or has the wrong kind / schema version."""
