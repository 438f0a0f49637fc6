"""The Typer app object and shared CLI helpers. Command modules register on ``app``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from querylearn import __version__

app = typer.Typer(
    name="querylearn",
    help=(
        "querylearn: continual universal user representations from Korean search queries.\n\n"
        "Pipeline: prepare -> embed-init -> train-sequence -> export-users -> coldstart-eval -> report."
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (choices complete too)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: "[synthetic]", "[files]", "[[task]]" stay as written
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"querylearn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """querylearn: continual universal user representations from Korean search queries."""


# ------------------------------------------------ -q/--quiet and -v/--verbose on every command

VERBOSITY = {"level": 0}  # -1 quiet, 0 normal, 1+ verbose (read by the commands and cli.main)


def set_verbosity(level: int) -> None:
    """-1: only errors (the console is silenced); 0: normal; >= 1: more detail (``-vv``: an internal
    error's traceback is also printed on stderr)."""
    VERBOSITY["level"] = level
    console.quiet = level < 0


def with_verbosity(fn):
    """``fn`` with two more options, ``-q/--quiet`` and ``-v/--verbose`` (counted), that set the
    verbosity before it runs. Applied to every registered command by :func:`add_verbosity_options`."""
    import functools
    import inspect

    signature = inspect.signature(fn, eval_str=True)
    extra = {
        "quiet": (Annotated[bool, typer.Option("-q", "--quiet", help="Print only errors.")], False),
        "verbose": (
            Annotated[int, typer.Option("-v", "--verbose", count=True,
                                        help="More detail; -vv also prints an internal error's traceback.")],
            0,
        ),
    }

    @functools.wraps(fn)
    def wrapper(*args, quiet: bool = False, verbose: int = 0, **kwargs):
        from querylearn.cli.choices import plain
        from querylearn.cli.progress import StepProgress
        from querylearn.progress import reporting

        set_verbosity(-1 if quiet else verbose)
        args = tuple(plain(a) for a in args)  # enum choices reach the command as plain strings
        kwargs = {k: plain(v) for k, v in kwargs.items()}
        # progress bars of long library loops: on a terminal only, never with --quiet
        bars = StepProgress(console) if console.is_terminal and not console.quiet else None
        try:
            with reporting(bars):
                return fn(*args, **kwargs)
        finally:
            if bars is not None:
                bars.close()

    params = [p for p in signature.parameters.values() if p.name not in extra]
    params += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
               for name, (annotation, default) in extra.items()]
    wrapper.__signature__ = signature.replace(parameters=params)
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


def add_verbosity_options() -> None:
    """Give every command registered on ``app`` the -q/-v options (once)."""
    for command in app.registered_commands:
        if command.callback is not None and not getattr(command.callback, "_verbosity", False):
            command.callback = with_verbosity(command.callback)
            command.callback._verbosity = True


def print_table(table) -> None:
    """Print a rich table; when the output is not a terminal, at its full natural width (no column
    cut to 80 characters, no '…'), so pipes and log files get every name and number."""
    if console.is_terminal or console.quiet:
        console.print(table)
        return
    wide = Console(file=console.file, width=100_000, color_system=None, highlight=False)
    wide.print(table, crop=False)
