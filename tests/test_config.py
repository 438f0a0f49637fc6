from dataclasses import dataclass, field

import pytest

from querylearn.config import dump_toml, load_config
from querylearn.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-3
    sizes: tuple[int, ...] = (1, 2)


@dataclass
class Outer:
    name: str = "x"
    epochs: int = 3
    flag: bool = False
    inner: Inner = field(default_factory=Inner)


def test_defaults_file_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('epochs = 5\n[inner]\nlr = 0.5\n')
    cfg = load_config(Outer, p, {"inner.sizes": [3, 4], "flag": True, "name": None})
    assert cfg == Outer(name="x", epochs=5, flag=True, inner=Inner(lr=0.5, sizes=(3, 4)))
    # the dump reads back to the same config
    q = tmp_path / "d.toml"
    q.write_text(dump_toml(cfg))
    assert load_config(Outer, q) == cfg


def test_unknown_keys_name_the_file_and_valid_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("epocs = 5\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown config key 'epocs'; valid keys here: epochs, flag, inner, name"):
        load_config(Outer, p)
    p.write_text("[inner]\nlrate = 1\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown config key 'inner.lrate'"):
        load_config(Outer, p)


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        load_config(Outer, None, {"epochs": "many"})
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        load_config(Outer, None, {"flag": 1})
