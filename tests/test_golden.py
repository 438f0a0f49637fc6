"""Every number the project produced when tests/golden/golden.json was recorded comes out the same.

See tests/golden_cases.py for what each case runs. A failure here means a change altered an output
(prepare files, embed-init vectors, R matrices, weights, the cold-start report): find out why before
re-recording (``python tests/golden_cases.py --write``), and say why in the commit.
"""

from __future__ import annotations

import json

import golden_cases
import pytest
import torch

GOLDEN = json.loads(golden_cases.GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path_factory.mktemp("golden")
    torch.set_num_threads(threads)


def test_prepare_outputs_unchanged(work):
    got = golden_cases.case_prepare(work)
    for source, files in GOLDEN["prepare"].items():
        if source not in got:  # MovieLens-100K absent on this machine
            continue
        missing = sorted(set(files) - set(got[source]))
        assert not missing, f"prepare {source}: files no longer written: {missing}"
        changed = sorted(f for f in files if got[source][f] != files[f])
        assert not changed, f"prepare {source}: files changed: {changed}"


def test_embed_init_vectors_unchanged(work):
    assert golden_cases.case_embed(work) == GOLDEN["embed"]


@pytest.mark.parametrize("strategy", golden_cases.STRATEGIES)
def test_train_sequence_numbers_unchanged(work, strategy):
    got = golden_cases.case_train(work, (strategy,))[strategy]
    want = GOLDEN["train"][strategy]
    for key in ("tasks", "R", "R_detail", "single", "fwt", "bwt", "epochs", "best_epoch"):
        assert got[key] == want[key], f"{strategy}: {key} changed"
    assert set(got["tensors"]) == set(want["tensors"]), f"{strategy}: checkpoint files changed"
    for ckpt, hashes in want["tensors"].items():  # the tensors of every checkpoint, in number
        assert len(got["tensors"][ckpt]) == len(hashes), f"{strategy} {ckpt}: tensors added or removed"
    capability = golden_cases.cpu_capability()
    tensors = golden_cases.golden_tensors(GOLDEN, capability)
    if tensors is None:
        pytest.skip(
            f"numbers unchanged; no tensor hashes recorded for CPU capability {capability} "
            "(python tests/golden_cases.py --write-tensors)"
        )
    for ckpt, hashes in tensors[strategy].items():
        lost = set(hashes) - set(got["tensors"][ckpt])
        assert not lost, f"{strategy} {ckpt}: {len(lost)} tensors changed or disappeared ({capability})"


def test_coldstart_report_unchanged(work):
    got = golden_cases.case_coldstart(work)
    want = golden_cases.normalise_coldstart(GOLDEN["coldstart"])
    assert golden_cases.close(got, want), "coldstart report changed"


def test_close_compares_floats_to_a_relative_tolerance():
    close = golden_cases.close
    assert close({"a": [0.7371436794, 2]}, {"a": [0.7371436665, 2]})  # the AVX2/AVX512 difference
    assert not close({"a": [0.7372, 2]}, {"a": [0.7371, 2]})
    assert not close({"a": [0.5, 3]}, {"a": [0.5, 2]}) and not close({"a": 1.0}, {"a": 1.0, "b": 0})
    assert not close(True, 1.0) and close("x", "x")
