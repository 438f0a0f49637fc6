"""Typed configs: dataclasses loaded from TOML with dotted overrides; unknown keys are errors.

Usage::

    cfg = load_config(TrainConfig, "run.toml", {"model.channels": 64, "epochs": 3})

Nested dataclass fields become TOML tables. Values are type-checked against the annotations
(``int`` accepts integers, ``float`` accepts ints and floats, ``tuple[int, ...]`` accepts lists).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from querylearn.errors import ConfigError

T = TypeVar("T")


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return _build(annotation, value, where + ".")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = _fields(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys here: {', '.join(sorted(fields))}"
        )
    kwargs = {name: _coerce(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None
    return obj


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
        if not isinstance(cur, dict):
            raise ConfigError(f"override '{key}': '{part}' is not a table")
    cur[parts[-1]] = value


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict (tuples become lists) for JSON/TOML."""

    def conv(v):
        if dataclasses.is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(obj)


def load_config(cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Build ``cls`` from defaults, then the TOML file at ``path``, then dotted ``overrides``.

    Overrides whose value is None are ignored (unset CLI flags). Raises ConfigError naming the
    bad key and the valid keys.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    # start from the defaults so partial tables keep the remaining defaults
    merged = to_dict(cls())
    where = f"{path}: " if path is not None else ""
    try:
        _deep_update(merged, data, "")
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(merged, key, value)
    try:
        return _build(cls, merged)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def _deep_update(base: dict, new: dict, prefix: str) -> None:
    for key, value in new.items():
        if key not in base:
            raise ConfigError(f"unknown config key '{prefix}{key}'; valid keys here: {', '.join(sorted(base))}")
        if isinstance(base[key], dict) and isinstance(value, dict):
            _deep_update(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def dump_toml(obj: Any) -> str:
    """Render a dataclass (or dict) as TOML (top-level scalars first, then tables)."""
    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj

    def fmt(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        raise ConfigError(f"cannot write {v!r} to TOML")

    lines: list[str] = []

    def emit(d: dict, prefix: str):
        tables = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, dict):
                tables.append((k, v))
            else:
                lines.append(f"{k} = {fmt(v)}")
        for k, v in tables:
            lines.append("")
            lines.append(f"[{prefix}{k}]")
            emit(v, f"{prefix}{k}.")

    emit(data, "")
    return "\n".join(lines).strip() + "\n"
