"""Console entry point: registers every command module and turns every error into one line.

- a :class:`QuerylearnError` (bad input, config or artifact) or an operating-system error (missing
  file, not a folder, disk full) prints ``error: ...`` and exits 1;
- anything else is a bug: one line says so and where the full traceback was written
  (``$QUERYLEARN_CRASH_DIR`` or the system temp folder), and the exit code is :data:`EXIT_BUG`.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from rich.markup import escape

from querylearn import __version__
from querylearn.cli import coldstart, demo, embed, prepare, train, use  # noqa: F401  (register commands)
from querylearn.cli.app import app, err_console
from querylearn.errors import QuerylearnError

EXIT_ERROR = 1  # bad input: the message says what to fix
EXIT_BUG = 70  # internal error (EX_SOFTWARE): a bug in querylearn, traceback written to a file
EXIT_INTERRUPTED = 130


def write_crash_log(text: str) -> Path:
    """Write ``text`` (a traceback) to a new file and return its path."""
    folder = Path(os.environ.get("QUERYLEARN_CRASH_DIR") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fd, name = tempfile.mkstemp(prefix=f"querylearn-crash-{stamp}-", suffix=".log", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f"querylearn {__version__}\nargv: {sys.argv!r}\n\n{text}")
    return Path(name)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; no traceback ever reaches the terminal (see the module docstring)."""
    try:
        app(args=argv, prog_name="querylearn")
    except QuerylearnError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] {escape(_one_line(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001  (the guard: any other exception is a bug)
        detail = _one_line(f"{type(exc).__name__}: {exc}")[:300]
        try:
            where = f"the full traceback is in {write_crash_log(traceback.format_exc())}"
        except OSError as log_exc:
            where = f"the traceback could not be written ({_one_line(log_exc)})"
        err_console.print(
            f"[bold red]internal error[/] (a bug in querylearn {__version__}, not in your input): "
            f"{escape(detail)}; {escape(where)}; please report it with that file",
            highlight=False, soft_wrap=True,
        )
        sys.exit(EXIT_BUG)


if __name__ == "__main__":
    main()
