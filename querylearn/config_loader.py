"""The one config loader of every stage: dataclass defaults < TOML file < dotted overrides.

Usage::

    cfg = load_config(TrainConfig, "run.toml", {"model.channels": 64, "epochs": 3})
    cfg = stage_config(BuildOptions, config=path, sets=["seq_len=30"], flags={"seed": 1})

Nested dataclass fields become TOML tables. Values are type-checked against the annotations
(``int`` accepts integers, ``float`` accepts ints and floats, ``tuple[int, ...]`` accepts lists).
Unknown keys are errors that name the file (or the override) and list the valid keys. Every
problem is a :class:`~querylearn.errors.ConfigError` whose message starts with the dotted key;
config classes check their values in ``__post_init__`` with :func:`require` (see docs/config.md).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from querylearn.artifacts import atomic_write_bytes
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
    except ConfigError as exc:
        # the class names its own field; add the section it sits in ("t1." + "lr: ...")
        raise ConfigError(f"{prefix}{exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from None
    return obj


def require(ok: bool, key: str, rule: str, value: Any) -> None:
    """Validation helper of config classes: ``ConfigError("key: rule, got value")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


def _is_free_table(annotation: Any) -> bool:
    """A ``dict`` field: a table whose keys the class does not fix (checked by whoever reads it)."""
    return annotation is dict or typing.get_origin(annotation) is dict


def _set_dotted(data: dict, key: str, value: Any, cls: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key = "a.b.c"``; an unknown key is an error at once."""
    parts = key.split(".")
    cur, cur_cls = data, cls
    for depth, part in enumerate(parts[:-1]):
        if cur_cls is not None:
            if part not in cur:
                raise ConfigError(
                    f"override '{key}': unknown config key '{'.'.join(parts[: depth + 1])}'; "
                    f"valid keys here: {', '.join(sorted(cur))}"
                )
            annotation = typing.get_type_hints(cur_cls)[part]
            if dataclasses.is_dataclass(annotation):
                cur_cls = annotation
            elif _is_free_table(annotation):
                cur_cls = None
            else:
                raise ConfigError(f"override '{key}': '{'.'.join(parts[: depth + 1])}' is not a table")
        nxt = cur.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"override '{key}': '{'.'.join(parts[: depth + 1])}' is not a table")
        cur = nxt
    if cur_cls is not None and parts[-1] not in cur:
        raise ConfigError(
            f"override '{key}': unknown config key '{key}'; valid keys here: {', '.join(sorted(cur))}"
        )
    cur[parts[-1]] = value


def flatten(table: dict, prefix: str = "") -> dict[str, Any]:
    """``{"model": {"channels": 64}}`` -> ``{"model.channels": 64}`` (the dotted override form)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


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
        _deep_update(merged, data, "", cls)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    for key, value in given.items():
        _set_dotted(merged, key, value, cls)
    try:
        return _build(cls, merged)
    except ConfigError as exc:
        # a bad value that came from an override is not the file's fault
        from_override = any(str(exc).startswith(f"{key}:") or str(exc).startswith(f"{key}[") for key in given)
        raise ConfigError(f"{'' if from_override else where}{exc}") from None


def _deep_update(base: dict, new: dict, prefix: str, cls: Any) -> None:
    hints = typing.get_type_hints(cls)
    for key, value in new.items():
        if key not in base:
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys here: {', '.join(sorted(base))}"
            )
        if dataclasses.is_dataclass(hints[key]) and isinstance(base[key], dict) and isinstance(value, dict):
            _deep_update(base[key], value, f"{prefix}{key}.", hints[key])
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


def parse_value(raw: str) -> Any:
    """A command-line value read as a TOML literal (``64``, ``true``, ``[1, 2]``, ``"x"``), else a string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """``--set section.key=value`` items -> ``{"section.key": value}`` (values as :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set model.channels=64")
        out[key] = parse_value(raw.strip())
    return out


def parse_dotted_args(args: list[str]) -> dict[str, Any]:
    """Extra ``--section.key value`` (or ``--section.key=value``) arguments -> ``{"section.key": value}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --set model.channels=64")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key} needs a value")
            raw = args[i + 1]
            i += 2
        out[key.replace("-", "_")] = parse_value(raw)
    return out


def stage_config(
    cls: type[T],
    *,
    config: str | Path | None = None,
    sets: list[str] | dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> T:
    """The config of one stage's CLI: defaults < ``--config`` file < ``--set`` overrides < named flags.

    ``flags`` maps dotted keys to the values of the stage's own options; None means "not given", so
    the dataclass default (or the file's value) stays. A key set by both ``--set`` and a flag to
    different values is an error rather than a silent choice.
    """
    overrides = dict(sets) if isinstance(sets, dict) else parse_sets(sets)
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key in overrides and overrides[key] != value:
            raise ConfigError(
                f"{key}: given twice (--set {key}={overrides[key]!r} and a flag with {value!r}); keep one"
            )
        overrides[key] = value
    return load_config(cls, config, overrides)


def write_config(out_dir: str | Path, cfg: Any, name: str = "config.toml") -> Path:
    """Write the resolved ``cfg`` as ``out_dir/config.toml`` (atomically); readable by ``--config``."""
    path = Path(out_dir) / name
    atomic_write_bytes(path, dump_toml(cfg).encode("utf-8"))
    return path
