"""docs/api.md is a notebook: its python blocks run in order, in an empty folder, and must pass."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_api_doc_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "api_doc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC}:block{i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "cold HR@10 with the run's vectors:" in out
    for name in (
        "work/data/dataset.json",
        "work/emb/vectors.npy",
        "work/run/metrics.json",
        "work/users.parquet",
        "work/coldstart/report.json",
        "work/model/model.safetensors",
        "work/new.parquet",
    ):
        assert (tmp_path / name).is_file(), name


def test_top_level_api_names():
    import types

    import querylearn
    import querylearn.api  # noqa: F401  (imports every submodule the API uses)

    assert sorted(querylearn._API) == sorted(querylearn.api.__all__)  # the lazy list is complete
    for name in querylearn._API:  # a submodule of the same name would shadow the function
        assert not isinstance(getattr(querylearn, name), types.ModuleType), name
    for name in (
        "prepare",
        "embed_init",
        "train_sequence",
        "export_users",
        "coldstart_eval",
        "UserEncoder",
        "export_model",
        "embed_users",
    ):
        assert callable(getattr(querylearn, name)), name
    assert callable(querylearn.UserEncoder.from_pretrained)
