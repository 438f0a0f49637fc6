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
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
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
