import importlib
import subprocess
import sys

import pytest

import querylearn

SUBPACKAGES = [
    "querylearn",
    "querylearn.data",
    "querylearn.models",
    "querylearn.continual",
    "querylearn.continual.strategies",
    "querylearn.embeddings",
    "querylearn.recsys",
    "querylearn.cli",
    "querylearn.cli.main",
]


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_subpackage_imports(name):
    mod = importlib.import_module(name)
    assert mod.__name__ == name


def test_namespaced_folders_map_to_querylearn():
    import querylearn.cli
    import querylearn.embeddings
    import querylearn.recsys

    # the top-level folders install under the querylearn namespace, not as top-level names
    for mod, folder in (
        (querylearn.embeddings, "embeddings"),
        (querylearn.recsys, "recsys"),
        (querylearn.cli, "cli"),
    ):
        assert mod.__file__.replace("\\", "/").endswith(f"{folder}/__init__.py")
    assert importlib.util.find_spec("embeddings") is None or "querylearn" not in str(
        importlib.util.find_spec("embeddings").origin
    )


def test_console_script_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "querylearn.cli.main", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"querylearn {querylearn.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "querylearn.cli.main", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "prepare" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "querylearn.cli.main", "prepare", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "--out" in out.stdout
