"""Console entry point: registers every command module and turns every error into one line.

- a :class:`QuerylearnError` (bad input, config or artifact) or an operating-system error (missing
  file, not a folder, disk full) prints ``error: ...`` and exits 1;
- a command line click refuses (unknown flag, missing option, a value outside an option's choices,
  which the message lists) prints ``error: ...; see 'querylearn CMD --help'`` and exits 2;
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

import typer
from rich.markup import escape

from querylearn import __version__
from querylearn.cli import coldstart, demo, embed, prepare, train, use  # noqa: F401  (register commands)
from querylearn.cli.app import VERBOSITY, add_verbosity_options, app, err_console
from querylearn.errors import QuerylearnError

EXIT_ERROR = 1  # bad input: the message says what to fix
EXIT_USAGE = 2  # a command line click refuses (unknown flag, missing option, value outside the choices)
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
    add_verbosity_options()
    try:
        code = app(args=argv, prog_name="querylearn", standalone_mode=False)
        # as click's standalone mode: always leave through SystemExit (--help, --version return their code)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":  # 'querylearn' alone: the help, as click shows it
            print(exc.format_message())
            sys.exit(EXIT_USAGE)
        ctx = getattr(exc, "ctx", None)  # set on usage errors: a wrong flag, a value outside the choices
        where = ""
        if ctx is not None and ctx.parent is not None:
            where = f"; see 'querylearn {ctx.info_name} --help'"
        message = _one_line(exc.format_message()).rstrip(".")
        err_console.print(f"[bold red]error:[/] {escape(message)}{escape(where)}",
                          highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE if ctx is not None else exc.exit_code)
    except typer.Abort:
        err_console.print("interrupted")
        sys.exit(EXIT_INTERRUPTED)
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
        if VERBOSITY["level"] >= 2:
            err_console.print(escape(traceback.format_exc()), highlight=False)
        err_console.print(
            f"[bold red]internal error[/] (a bug in querylearn {__version__}, not in your input): "
            f"{escape(detail)}; {escape(where)}; please report it with that file",
            highlight=False, soft_wrap=True,
        )
        sys.exit(EXIT_BUG)


if __name__ == "__main__":
    main()
