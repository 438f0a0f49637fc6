"""Golden outputs: what every stage produced at the commit the golden file was recorded at.

Each case runs a stage through the CLI (the public contract, so internal refactors cannot hide a change)
on a tiny fixture with fixed seeds on one CPU thread, and returns a JSON-able summary:

- ``prepare``: sha256 of every file of the dataset directory (synthetic, files, toy, MovieLens-100K).
- ``embed-init``: sha256 of ``vectors.npy`` and ``vocab.json`` per source (random, tiny KoBERT, tiny hf).
- ``train``: for every strategy and ablation, the R matrix and its per-task details (all floats), FWT and
  BWT from ``metrics.json``, and per checkpoint the sorted list of its tensors' hashes (dtype, shape,
  bytes; names are left out so that moving a tensor to another module keeps its hash).
- ``coldstart``: the metrics of a tiny ``coldstart-eval`` report on a trained run's representation.

Weights depend on the CPU's vector kernels: torch's AVX2 and AVX512 kernels round some sums
differently, so the trained tensors differ in their last bits while every metric stays the same. The
tensor hashes are therefore recorded per ``torch.backends.cpu.get_cpu_capability()``:
``golden.json`` holds those of the machine it was recorded on (``TENSORS_CAPABILITY``) and
``golden/tensors-CAPABILITY.json`` those of other machines. Floats of the cold-start report (NCF
training losses) are compared to a relative 1e-6 for the same reason; every metric stays exact.

Regenerate (only when a behaviour change is intended and explained in the commit):
``python tests/golden_cases.py --write``; on a machine of another CPU capability, record its tensor
hashes with ``python tests/golden_cases.py --write-tensors``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "golden.json"
TENSORS_CAPABILITY = "AVX512"  # the CPU capability golden.json's tensor hashes were recorded on


def cpu_capability() -> str:
    import torch

    return torch.backends.cpu.get_cpu_capability()


def tensors_file(capability: str) -> Path:
    return HERE / "golden" / f"tensors-{capability}.json"


def golden_tensors(golden: dict, capability: str) -> dict | None:
    """{strategy: {checkpoint: [hashes]}} recorded for ``capability``, or None when none was."""
    if capability == TENSORS_CAPABILITY:
        return {name: run["tensors"] for name, run in golden["train"].items()}
    path = tensors_file(capability)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def close(got, want, rel: float = 1e-6) -> bool:
    """``got == want`` with floats compared to a relative ``rel`` (recursively through dicts/lists)."""
    if isinstance(got, bool) or isinstance(want, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, float) and isinstance(got, (int, float)):
        return abs(got - want) <= rel * max(abs(want), abs(got), 1e-12)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(close(got[k], want[k], rel) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(close(a, b, rel) for a, b in zip(got, want, strict=True))
    return got == want


ML100K = HERE.parents[1] / "shared" / "data" / "movielens-100k"

STRATEGIES = (
    "teracon",
    "teracon-noretention",
    "teracon-rho1",
    "teracon-plain",
    "finetune",
    "single",
    "hat",
    "conure",
    "multitask",
)
# multi_target_batching = "pair": the golden numbers were recorded with pair batching, the default
# until issue 14 made "user" the default (docs/benchmarks-train.md, "Per-user batching")
TRAIN_ARGS = [
    "--epochs", "2", "--seed", "0", "--threads", "1", "--device", "cpu", "--no-progress",
    "--model.channels", "16", "--model.dilations", "[1, 2]",
    "--t2.batch_size", "64", "--later.batch_size", "64", "--multi_target_batching", "pair",
]  # fmt: skip
# the official revised code's TERACON settings (issue 11 changed the defaults of min_kr_samples to 16
# and of freeze to "shared"; docs/algorithms.md "Mechanism options"): the golden numbers were
# recorded with them
TERACON_PARITY = [
    "--teracon.min_kr_samples", "1", "--teracon.mask_reg", "0", "--teracon.relation_init", "official",
    "--teracon.freeze", "none",
]  # fmt: skip

FILES_LOG = (
    "user_id,timestamp,query\n"
    "a,100,캠핑 의자\na,200,캠핑 테이블\na,300,텐트\n"
    "b,150,원피스\nb,120,니트\nb,400,원피스\nb,500,가디건\n"
    "c,50,노트북\nc,60,마우스\nc,70,키보드\nc,80,모니터\n"
)
FILES_TASKS = '[[task]]\nname = "T1"\nkind = "next_query"\n'


def _cli(argv: list[str]) -> None:
    from querylearn.cli.main import main

    try:
        main(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"querylearn {' '.join(argv)} exited {exc.code}") from None


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scrub(obj, work: Path):
    """``obj`` with the work folder's and the shared data's absolute paths replaced in every string."""
    if isinstance(obj, str):
        return obj.replace(str(work), "<work>").replace(str(ML100K), "<ml100k>")
    if isinstance(obj, dict):
        return {k: _scrub(v, work) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_scrub(v, work) for v in obj]
    return obj


def _dir_hashes(root: Path, work: Path) -> dict[str, str]:
    """sha256 per file; ``dataset.json`` is hashed with the work folder's path scrubbed."""
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.name == "dataset.json":
            text = json.dumps(_scrub(json.loads(p.read_text(encoding="utf-8")), work), sort_keys=True)
            out[str(p.relative_to(root))] = hashlib.sha256(text.encode("utf-8")).hexdigest()
        else:
            out[str(p.relative_to(root))] = _sha(p)
    return out


def _tensor_hashes(path: Path) -> list[str]:
    from safetensors.numpy import load_file

    out = []
    for arr in load_file(str(path)).values():
        arr = np.ascontiguousarray(arr)
        h = hashlib.sha256(f"{arr.dtype}{list(arr.shape)}".encode() + arr.tobytes()).hexdigest()
        out.append(h)
    return sorted(out)


def case_prepare(work: Path) -> dict:
    out: dict = {}
    _cli(["prepare", "synthetic", "--users", "300", "--seed", "0", "--out", str(work / "syn")])
    out["synthetic"] = _dir_hashes(work / "syn", work)
    (work / "log.csv").write_text(FILES_LOG, encoding="utf-8")
    (work / "tasks.toml").write_text(FILES_TASKS, encoding="utf-8")
    _cli(["prepare", "files", "--queries", str(work / "log.csv"), "--tasks", str(work / "tasks.toml"),
          "--seq-len", "3", "--out", str(work / "files")])  # fmt: skip
    out["files"] = _dir_hashes(work / "files", work)
    out["toy"] = _dir_hashes(toy_dir(work), work)
    if (ML100K / "u.data").is_file():
        _cli(["prepare", "movielens-100k", "--path", str(ML100K), "--exclude-last-interaction",
              "--out", str(work / "ml")])  # fmt: skip
        out["movielens-100k"] = _dir_hashes(work / "ml", work)
    return out


def toy_dir(work: Path) -> Path:
    """The toy dataset (built once per work folder)."""
    target = work / "toy"
    if not (target / "dataset.json").is_file():
        sys.path.insert(0, str(HERE))
        try:
            from toy import make_toy_dataset  # tests/toy.py once the fixture lives in tests/
        except ImportError:
            from querylearn.data.toy import make_toy_dataset
        make_toy_dataset(target)
    return target


def case_embed(work: Path) -> dict:
    sys.path.insert(0, str(HERE))
    import kobert_tiny

    toy = toy_dir(work)
    out = {}
    sources = {
        "random": ["--source", "random", "--seed", "3"],
        "random-d8": ["--source", "random", "--seed", "3", "--dim", "8"],
        "kobert": ["--source", "kobert", "--model", str(kobert_tiny.tiny_kobert_dir())],
        "hf": ["--source", "hf", "--model", str(kobert_tiny.build_tiny_hf_bert(work / "bert"))],
    }
    for name, args in sources.items():
        emb = work / f"emb-{name}"
        _cli(["embed-init", "--data", str(toy), "--out", str(emb), *args])
        out[name] = {f: _sha(emb / f) for f in ("vectors.npy", "vocab.json")}
    return out


def _run_summary(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    keep = {k: metrics[k] for k in ("tasks", "R", "R_detail", "single", "fwt", "bwt", "epochs", "best_epoch")}
    keep["tensors"] = {p.name: _tensor_hashes(p) for p in sorted((run / "checkpoints").glob("*.safetensors"))}
    return keep


def case_train(work: Path, strategies=STRATEGIES) -> dict:
    toy = toy_dir(work)
    out = {}
    for name in strategies:
        run = work / f"run-{name}"
        extra = ["--with-single"] if name == "teracon" else []
        extra += TERACON_PARITY if name.startswith("teracon") else []
        _cli(
            ["train-sequence", "--data", str(toy), "--out", str(run), "--strategy", name, *TRAIN_ARGS, *extra]
        )
        out[name] = _run_summary(run)
    return out


def case_coldstart(work: Path) -> dict:
    toy = toy_dir(work)
    run = work / "run-teracon"
    if not (run / "metrics.json").is_file():
        case_train(work, ("teracon",))
    rep = work / "coldstart"
    # The run's last checkpoint (after T3) with T2's mask: what "--after-task T2" exported when the
    # golden file was recorded (issue 17 made --after-task pick the checkpoint after that task).
    _cli(["coldstart-eval", "--data", str(toy), "--out", str(rep), "--run", str(run), "--after-task", "T3",
          "--mask-task", "T2", "--negatives", "10", "--seed", "1", "--epochs", "2", "--cold-fraction", "0.2",
          "--threads", "1"])  # fmt: skip
    report = json.loads((rep / "report.json").read_text(encoding="utf-8"))
    return normalise_coldstart(_scrub({"counts": report["counts"], "methods": report["methods"]}, work))


def normalise_coldstart(summary: dict) -> dict:
    """Numbers only: the run's source label (its name and wording changed with issue 17) and the
    timings are left out."""
    methods = {}
    for name, entry in summary["methods"].items():
        methods[re.sub(r"\[run-teracon[^\]]*\]", "[run-teracon]", name)] = {
            k: v for k, v in entry.items() if k not in ("seconds", "source")
        }
    return {"counts": summary["counts"], "methods": methods}


CASES = {"prepare": case_prepare, "embed": case_embed, "train": case_train, "coldstart": case_coldstart}


def run_all(work: Path) -> dict:
    import torch

    torch.set_num_threads(1)
    return {name: fn(work) for name, fn in CASES.items()}


if __name__ == "__main__":
    import tempfile

    if "--write-tensors" in sys.argv:  # this CPU capability's tensor hashes, beside golden.json
        import torch

        torch.set_num_threads(1)
        with tempfile.TemporaryDirectory() as tmp:
            runs = case_train(Path(tmp))
        path = tensors_file(cpu_capability())
        path.write_text(
            json.dumps({k: v["tensors"] for k, v in runs.items()}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8",
        )
        sys.exit(f"wrote {path}")
    if "--write" not in sys.argv:
        sys.exit("usage: python tests/golden_cases.py --write | --write-tensors")
    if cpu_capability() != TENSORS_CAPABILITY:
        sys.exit(f"golden.json's tensors are {TENSORS_CAPABILITY} hashes; this CPU is {cpu_capability()}")
    with tempfile.TemporaryDirectory() as tmp:
        result = run_all(Path(tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
