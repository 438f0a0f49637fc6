"""CLI commands (filled in by the stage that owns them)."""

from querylearn.cli.app import app  # noqa: F401
