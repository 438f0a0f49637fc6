"""Progress of the library's long loops (embedding many queries, reading large logs, NCF training).

Library code wraps a loop in :func:`track`, which yields the items unchanged and, only when a
reporter has been installed with :func:`reporting` (the CLI does so on a terminal), advances a
progress bar. Without a reporter nothing is printed, so library calls and pipes stay silent.
A reporter has the methods of ``querylearn.cli.progress.RichProgress``: ``start(description, total)
-> handle``, ``advance(handle)``, ``stop(handle)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")
_REPORTER: ContextVar[Any] = ContextVar("querylearn_progress", default=None)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``; advance the installed reporter's bar once per item (``total`` when known)."""
    reporter = _REPORTER.get()
    if reporter is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    handle = reporter.start(description, total)
    try:
        for item in items:
            yield item
            reporter.advance(handle)
    finally:
        reporter.stop(handle)


@contextmanager
def reporting(reporter):
    """Install ``reporter`` for :func:`track` while the block runs (None: silent)."""
    token = _REPORTER.set(reporter)
    try:
        yield reporter
    finally:
        _REPORTER.reset(token)
