"""TERACON mechanism measurements: tiny runs per variant and seed -> one table (issue 11).

Each (variant, seed) is one ``train_sequence`` run (in this process, sequentially) with the base
overrides plus the variant's; the table reads the runs' artifacts only (metrics.json and the
per-epoch logs written by the strategy, see docs/train-sequence.md "Logs"):

  std T1 / std T2: mask std across channels at smax after the last task (masks.npz, mean over
  layers); off T1 / off T2: fraction of channels below 0.5 (mean over layers); cos: cosine of the
  T1 and T2 masks (concatenated over layers);
  rho: ρ of each past task, mean over the last task's epochs after its first (the first epoch's mean
  includes the first batch's rho_init = 0.9); kept: users retained per past task and batch (mean,
  same epochs); R: R(T_last, T_j) and R(T_j, T_j).

Usage (the numbers in docs/benchmarks-train.md, "TERACON mechanism")::

    querylearn prepare synthetic --users 8000 --seed 0 --out /tmp/syn8k
    nice -n 10 python bench/teracon_mechanism.py --data /tmp/syn8k --root /tmp/mech --seeds 0,1 \\
        --set model.channels=32 --set 'model.dilations=[1,4]' --set 'tasks=["T1","T2"]' \\
        --variant 'parity=teracon.mask_reg=0' --variant 'reg=teracon.mask_reg=0.75' ...

``--variant NAME=KEY=VALUE[;KEY=VALUE...]`` (TOML values); ``NAME=`` alone runs the base settings.
With ``--t1 GROUP=KEY=VALUE[;...]`` the first task is trained once per group and seed (a T1-only
run) and a variant written ``NAME=GROUP:KEY=VALUE;...`` continues a copy of it with the group's
and its own overrides (``train_sequence(resume=..., add_task=...)``: the same numbers as one run
with those settings, since T1 only reads the T1 options). A finished run directory is reused
(delete it to re-run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path

import numpy as np

from querylearn.continual.results import read_masks


def _value(raw: str):
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def parse_pairs(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"{item!r}: expected key=value")
        out[key.strip()] = _value(raw.strip())
    return out


def parse_variant(text: str) -> tuple[str, str | None, dict]:
    """'NAME=[GROUP:]K=V;K=V' -> (name, T1 group or None, overrides)."""
    name, _, rest = text.partition("=")
    group = None
    head, colon, tail = rest.partition(":")
    if colon and "=" not in head:
        group, rest = head.strip(), tail
    return name, group, parse_pairs([p for p in rest.split(";") if p.strip()])


def _records(run: Path, position: int, task: str) -> list[dict]:
    path = run / "logs" / f"{position + 1:02d}-{task}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def summarise_run(run: Path) -> dict:
    """The mechanism's numbers of one finished run (artifacts only)."""
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    tasks, R = m["tasks"], m["R"]
    last = _records(run, len(tasks) - 1, tasks[-1])
    out: dict = {"tasks": tasks, "epochs": m["epochs"], "best_epoch": m["best_epoch"]}
    names, masks = read_masks(run)  # [N, M, C] at smax, the restored (best) model after the last task
    for i, t in enumerate(names):
        out[f"std {t}"] = float(masks[i].std(axis=-1).mean())
        out[f"off {t}"] = float((masks[i] < 0.5).mean())
    if len(names) > 1:
        flat = masks.reshape(len(names), -1).astype(np.float64)
        out["cos T1-T2"] = float(
            flat[0] @ flat[1] / max(np.linalg.norm(flat[0]) * np.linalg.norm(flat[1]), 1e-12)
        )
    last = last[1:] if len(last) > 1 else last
    for j, t in enumerate(tasks[:-1]):
        rhos = [r["rho_mean"][t] for r in last if "rho_mean" in r]
        kept = [r["retained_per_batch"][t] for r in last if "retained_per_batch" in r]
        out[f"rho {t}"] = statistics.fmean(rhos) if rhos else None
        out[f"kept {t}"] = statistics.fmean(kept) if kept else None
        out[f"R({tasks[-1]},{t})"] = R[-1][j]
    for i, t in enumerate(tasks):
        out[f"R({t},{t})"] = R[i][i]
    return out


def table(rows: dict[str, list[dict]]) -> str:
    keys: list[str] = []
    for runs in rows.values():
        for r in runs:
            keys += [k for k in r if k not in keys and k not in ("tasks", "epochs", "best_epoch")]
    head = ["variant", "seeds", *keys, "epochs (best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in rows.items():
        cells = [name, str(len(runs))]
        for k in keys:
            vals = [r[k] for r in runs if r.get(k) is not None]
            if not vals:
                cells.append("–")
                continue
            mean = statistics.fmean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            digits = 4 if abs(mean) < 0.1 else 3
            cells.append(f"{mean:.{digits}f} ± {sd:.{digits}f}" if len(vals) > 1 else f"{mean:.{digits}f}")
        cells.append(
            "; ".join(
                ",".join(f"{e}({b})" for e, b in zip(r["epochs"], r["best_epoch"], strict=True)) for r in runs
            )
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _complete(run: Path) -> bool:
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    return len(m["R"]) == len(m["tasks"]) and all(v is not None for v in m["R"][-1])


def _continue_t1(
    data: Path,
    root: Path,
    group: str,
    group_over: dict,
    run: Path,
    base: dict,
    over: dict,
    config: Path | None = None,
) -> None:
    """Train (once) T1 with the group's settings, then copy it to ``run`` and learn the later tasks
    with the group's and the variant's settings."""
    import dataclasses
    import shutil

    from querylearn.config import dump_toml, load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.data import resolve_task_order
    from querylearn.continual.run import train_sequence
    from querylearn.data.dataset import load_dataset

    full = load_config(TrainConfig, config, {**base, **group_over, **over})
    tasks = resolve_task_order(load_dataset(data), full.tasks)  # tasks = [] means the dataset's order
    t1_run = root / f"t1-{group}-s{base['seed']}"
    if not (t1_run / "metrics.json").is_file():
        if t1_run.exists():
            raise SystemExit(f"{t1_run}: an unfinished run; remove it first")
        train_sequence(
            data, t1_run, config=load_config(TrainConfig, config, {**base, **group_over, "tasks": tasks[:1]})
        )
    shutil.copytree(t1_run, run)
    (run / "config.toml").write_text(
        dump_toml(dataclasses.replace(full, tasks=tuple(tasks[:1]))), encoding="utf-8"
    )
    for task in tasks[1:]:
        train_sequence(resume=run, add_task=task)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--root", type=Path, required=True, help="run directories go here")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--config", type=Path, help="a run TOML under the overrides (e.g. bench/configs/*.toml)")
    ap.add_argument("--set", action="append", default=[], help="base key=value override (TOML value)")
    ap.add_argument("--variant", action="append", default=[], help="NAME=[GROUP:]KEY=VALUE[;KEY=VALUE...]")
    ap.add_argument("--t1", action="append", default=[], help="GROUP=KEY=VALUE[;...]: a shared T1 run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = ap.parse_args(argv)

    from querylearn.config import load_config
    from querylearn.continual.config import TrainConfig
    from querylearn.continual.run import train_sequence

    base = {"device": "cpu", "threads": args.threads, **parse_pairs(args.set)}
    groups = {name: over for name, _, over in (parse_variant(g) for g in args.t1)}
    variants = [parse_variant(v) for v in args.variant] or [("base", None, {})]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows: dict[str, list[dict]] = {}
    for name, group, over in variants:
        for seed in seeds:
            run = args.root / f"{name}-s{seed}"
            if not (run / "metrics.json").is_file() or not _complete(run):
                if run.exists():
                    raise SystemExit(f"{run}: an unfinished run; remove it first")
                if group is None:
                    cfg = load_config(TrainConfig, args.config, {**base, **over, "seed": seed})
                    train_sequence(args.data, run, config=cfg)
                else:
                    _continue_t1(
                        args.data, args.root, group, groups[group], run, {**base, "seed": seed}, over,
                        args.config,
                    )
                print(f"done {name} seed {seed}", file=sys.stderr, flush=True)
            rows.setdefault(name, []).append(summarise_run(run))
    text = table(rows)
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
