from dataclasses import dataclass, field

import pytest

from querylearn.config_loader import dump_toml, flatten, load_config, parse_sets, stage_config
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
    p.write_text("epochs = 5\n[inner]\nlr = 0.5\n")
    cfg = load_config(Outer, p, {"inner.sizes": [3, 4], "flag": True, "name": None})
    assert cfg == Outer(name="x", epochs=5, flag=True, inner=Inner(lr=0.5, sizes=(3, 4)))
    # the dump reads back to the same config
    q = tmp_path / "d.toml"
    q.write_text(dump_toml(cfg))
    assert load_config(Outer, q) == cfg


def test_unknown_keys_name_the_file_and_valid_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("epocs = 5\n")
    with pytest.raises(
        ConfigError, match=r"c.toml: unknown config key 'epocs'; valid keys here: epochs, flag, inner, name"
    ):
        load_config(Outer, p)
    p.write_text("[inner]\nlrate = 1\n")
    with pytest.raises(ConfigError, match=r"c.toml: unknown config key 'inner.lrate'"):
        load_config(Outer, p)


def test_wrong_types_are_errors():
    with pytest.raises(ConfigError, match="epochs: expected an integer"):
        load_config(Outer, None, {"epochs": "many"})
    with pytest.raises(ConfigError, match="flag: expected true/false"):
        load_config(Outer, None, {"flag": 1})


# ---- one style for every stage: --config FILE, --set section.key=value, flags default to "not given" ----


@dataclass
class WithTable:
    seed: int = 0
    inner: Inner = field(default_factory=Inner)
    stage: dict = field(default_factory=dict)  # free table: keys checked by whoever reads it


def test_parse_sets_reads_toml_values():
    assert parse_sets(["inner.lr=0.5", "name=abc", "inner.sizes=[1, 2]", "flag=true", 'x-y="q"']) == {
        "inner.lr": 0.5,
        "name": "abc",
        "inner.sizes": [1, 2],
        "flag": True,
        "x_y": "q",
    }
    with pytest.raises(ConfigError, match=r"--set 'epochs': expected section.key=value"):
        parse_sets(["epochs"])


def test_stage_config_precedence_defaults_file_set_flags(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('name = "file"\nepochs = 5\n[inner]\nlr = 0.5\n')
    cfg = stage_config(
        Outer, config=p, sets=["epochs=6", "inner.lr=0.25"], flags={"name": "flag", "flag": None}
    )
    assert cfg == Outer(name="flag", epochs=6, flag=False, inner=Inner(lr=0.25))
    # the same key from --set and a flag with different values is an error, equal values are fine
    with pytest.raises(ConfigError, match=r"epochs: given twice"):
        stage_config(Outer, sets=["epochs=6"], flags={"epochs": 7})
    assert stage_config(Outer, sets=["epochs=7"], flags={"epochs": 7}).epochs == 7


def test_override_errors_name_the_override_not_the_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("epochs = 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, p, {"inner.lrate": 1})
    assert (
        str(exc.value)
        == "override 'inner.lrate': unknown config key 'inner.lrate'; valid keys here: lr, sizes"
    )
    with pytest.raises(ConfigError, match=r"^override 'epochs.x': 'epochs' is not a table$"):
        load_config(Outer, p, {"epochs.x": 1})
    with pytest.raises(ConfigError, match=r"^epochs: expected an integer"):
        load_config(Outer, p, {"epochs": "many"})
    p.write_text('epochs = "many"\n')
    with pytest.raises(ConfigError, match=r"c.toml: epochs: expected an integer"):
        load_config(Outer, p)


def test_free_tables_take_any_nested_key(tmp_path):
    cfg = load_config(WithTable, None, {"stage.model.channels": 8, "stage.seed": 3})
    assert cfg.stage == {"model": {"channels": 8}, "seed": 3}
    assert flatten(cfg.stage) == {"model.channels": 8, "seed": 3}
    p = tmp_path / "c.toml"
    p.write_text("[stage.model]\nchannels = 4\n")
    assert load_config(WithTable, p).stage == {"model": {"channels": 4}}
    with pytest.raises(ConfigError, match="unknown config key 'inner.x'"):
        load_config(WithTable, None, {"inner.x": 1})


def test_train_config_errors_are_config_errors_naming_the_key(tmp_path):
    from querylearn.continual.config import PhaseConfig, TrainConfig

    with pytest.raises(ConfigError, match=r"^t1.lr: must be > 0, got -1.0$"):
        load_config(TrainConfig, None, {"t1.lr": -1})
    with pytest.raises(ConfigError, match=r"^teracon.min_kr_samples: must be >= 1"):
        load_config(TrainConfig, None, {"teracon.min_kr_samples": 0})
    with pytest.raises(ConfigError, match=r"^model.dilations: must be non-empty"):
        load_config(TrainConfig, None, {"model.dilations": []})
    p = tmp_path / "run.toml"
    p.write_text("smax = 0\n")
    with pytest.raises(ConfigError, match=r"run.toml: smax: must be > 0, got 0.0$"):
        load_config(TrainConfig, p)
    with pytest.raises(ConfigError, match=r"^patience: must be >= 1, got 0$"):  # direct construction too
        PhaseConfig(patience=0)


def test_build_options_seq_len_default_is_written_once():
    from querylearn.data.build import DEFAULT_SEQ_LEN, SOURCE_SEQ_LEN, BuildOptions

    opts = BuildOptions()
    assert opts.seq_len is None
    assert opts.for_source("synthetic").seq_len == DEFAULT_SEQ_LEN == 60
    assert opts.for_source("movielens-100k").seq_len == SOURCE_SEQ_LEN["kmrd"] == 30
    assert BuildOptions(seq_len=12).for_source("kmrd").seq_len == 12
    with pytest.raises(ConfigError, match=r"^seq_len: must be at least 2, got 1$"):
        BuildOptions(seq_len=1)
    with pytest.raises(ConfigError, match=r"^chunk_rows: must be at least 1, got 0$"):
        load_config(BuildOptions, None, {"chunk_rows": 0})
    with pytest.raises(ConfigError, match=r"override 'synthetic.users'.*valid keys here: noisy_task$"):
        load_config(BuildOptions, None, {"synthetic.users": 5})
    assert opts.for_source("synthetic").users == 2000 and opts.for_source("files").users is None


@pytest.mark.parametrize("source", ["random", "kobert", "e5"])
def test_embed_init_config_resolves_once_and_reads_back(tmp_path, source):
    from querylearn.embeddings.base import EmbedInitConfig
    from querylearn.embeddings.build import resolve_config

    cfg = resolve_config(source=source, dim=8)
    assert cfg.batch_size == EmbedInitConfig.batch_size and cfg.max_length == EmbedInitConfig.max_length
    p = tmp_path / "config.toml"
    p.write_text(dump_toml(cfg))
    assert load_config(EmbedInitConfig, p) == cfg  # a written config is a valid --config
    expected = {
        "random": ("none", None),
        "kobert": ("subword-mean", "skt/kobert-base-v1"),
        "e5": ("sentence", None),
    }
    assert (cfg.pooling, cfg.model) == expected[source]


def test_embed_init_config_errors():
    from querylearn.embeddings.base import EmbedInitConfig
    from querylearn.embeddings.build import resolve_config

    with pytest.raises(ConfigError, match=r"--batch-size 0: must be >= 1"):
        resolve_config(source="e5", batch_size=0)
    with pytest.raises(ConfigError, match=r"^source: not given"):
        load_config(EmbedInitConfig, None, {"dim": 4}).require_source()
    with pytest.raises(ConfigError, match=r"--model does not apply to --source random"):
        load_config(EmbedInitConfig, None, {"source": "random", "model": "x"})


# ---- the stages' CLIs ----


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    from querylearn.cli.main import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_prepare_config_file_set_and_written_config(tmp_path, capsys):
    from querylearn.data.build import BuildOptions
    from querylearn.data.dataset import load_manifest

    cfg = tmp_path / "prepare.toml"
    cfg.write_text("seq_len = 12\nmin_count = 2\nusers = 400\n[synthetic]\nnoisy_task = false\n")
    out = tmp_path / "ds"
    code, _, err = _cli(
        [
            "prepare",
            "synthetic",
            "--out",
            str(out),
            "--config",
            str(cfg),
            "--set",
            "users=120",
            "--seed",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    m = load_manifest(out)
    assert (m["seq_len"], m["n_users"], m["build"]["min_count"]) == (12, 120, 2)
    written = load_config(BuildOptions, out / "config.toml")
    assert (written.seq_len, written.min_count, written.seed, written.users) == (12, 2, 3, 120)
    # the written config rebuilds the same dataset
    code, _, err = _cli(
        ["prepare", "synthetic", "--out", str(tmp_path / "again"), "--config", str(out / "config.toml")],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "again" / "sequences.npy").read_bytes() == (out / "sequences.npy").read_bytes()


def test_prepare_bad_keys_one_line(tmp_path, capsys):
    cfg = tmp_path / "prepare.toml"
    cfg.write_text("seqlen = 12\n")
    code, _, err = _cli(["prepare", "synthetic", "--out", str(tmp_path / "o"), "--config", str(cfg)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "prepare.toml: unknown config key 'seqlen'; valid keys here: chunk_rows," in err
    code, _, err = _cli(
        ["prepare", "synthetic", "--out", str(tmp_path / "o"), "--set", "split=users"], capsys
    )
    assert code == 1 and "split: must be one of user, example, got 'users'" in err
    assert not (tmp_path / "o").exists()


def test_embed_init_config_and_set(toy, tmp_path, capsys):
    from querylearn.embeddings.base import EmbedInitConfig

    cfg = tmp_path / "embed.toml"
    cfg.write_text('source = "random"\ndim = 6\n')
    out = tmp_path / "emb"
    code, _, err = _cli(
        ["embed-init", "--data", str(toy), "--out", str(out), "--config", str(cfg), "--set", "seed=4"], capsys
    )
    assert code == 0, err
    written = load_config(EmbedInitConfig, out / "config.toml")
    assert (written.source, written.dim, written.seed, written.pooling) == ("random", 6, 4, "none")
    code, _, err = _cli(["embed-init", "--data", str(toy), "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "source: not given; pass --source random|kobert|hf|e5" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train-sequence", "--data", "d", "--out", "o", "--set", "model.chanels=8"],
            "override 'model.chanels': unknown config key 'model.chanels'; valid keys here: channels,",
        ),
        (
            ["coldstart-eval", "--data", "d", "--out", "o", "--set", "ncf.epoch=2"],
            "override 'ncf.epoch': unknown config key 'ncf.epoch'; valid keys here: batch_size,",
        ),
        (
            ["coldstart-eval", "--data", "d", "--out", "o", "--negatives", "0"],
            "negatives: must be at least 1",
        ),
        (
            ["demo", "--out", "o", "--set", "preset=huge"],
            "preset: must be one of small, full, tiny, got 'huge'",
        ),
    ],
)
def test_every_stage_takes_set_and_names_the_key(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(args, capsys)
    assert code == 1 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_demo_checks_every_stage_config_before_running(tmp_path):
    from querylearn.cli.demo import DemoConfig, run_demo

    with pytest.raises(ConfigError, match=r"override 'model.chanels'"):
        run_demo(tmp_path / "d", DemoConfig(preset="tiny", train={"model": {"chanels": 8}}), e5=False)
    with pytest.raises(ConfigError, match=r"override 'negative'"):
        run_demo(tmp_path / "d", DemoConfig(preset="tiny", coldstart={"negative": 8}), e5=False)
    assert not (tmp_path / "d").exists()
