"""Name -> factory registries; a miss lists the available names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from querylearn.errors import QuerylearnError


class Registry:
    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn):
            if name in self._items:
                raise ValueError(f"{self.what} '{name}' registered twice")
            self._items[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._items[name]
        except KeyError:
            raise QuerylearnError(
                f"unknown {self.what} '{name}'; available: {', '.join(sorted(self._items))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
