"""Console entry point: registers every command module and turns library errors into one line."""

from __future__ import annotations

import sys

from querylearn.cli import coldstart, demo, embed, prepare, train, use  # noqa: F401  (register commands)
from querylearn.cli.app import app, err_console
from querylearn.errors import QuerylearnError


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a QuerylearnError (or a missing/unreadable file) prints one line and exits 1."""
    try:
        app(args=argv, prog_name="querylearn")
    except QuerylearnError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
