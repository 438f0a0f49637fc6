"""Benchmark: build a dataset from a ~5M-row synthetic query log through the chunked file path.

Writes the synthetic log (default 92,000 users ≈ 5M query rows) as Parquet + label CSVs + tasks TOML,
then runs ``querylearn prepare files`` in a child process and reports rows/s and the child's peak RSS.

    python bench/bench_prepare.py [--users 92000] [--chunk-rows 500000] [--work /tmp/qlbench] \
        [--set min_count=2]

Results are printed and written to bench/results/prepare_seq{SEQ_LEN}.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=92_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk-rows", type=int, default=500_000)
    ap.add_argument("--seq-len", type=int, default=None, help="default: the source's, from BuildOptions")
    ap.add_argument("--set", action="append", default=[], help="BuildOptions override key=value; repeatable")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qlbench"))
    ap.add_argument("--reuse", action="store_true", help="reuse the log already written under --work")
    ap.add_argument("--out", type=Path, default=None, help="default: bench/results/prepare_seq{SEQ_LEN}.json")
    args = ap.parse_args()

    from querylearn.data.synthetic import generate_synthetic_log

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.reuse and (work / "log.parquet").is_file():
        import pyarrow.parquet as pq

        n_rows = pq.ParquetFile(work / "log.parquet").metadata.num_rows
        t_gen = 0.0
    else:
        n_rows, t_gen = _write_inputs(args, work, generate_synthetic_log, t0)

    cmd = [
        sys.executable,
        "-m",
        "querylearn.cli.main",
        "prepare",
        "files",
        "--queries",
        str(work / "log.parquet"),
        "--tasks",
        str(work / "tasks.toml"),
        "--interactions",
        str(work / "inter.csv"),
        "--out",
        str(work / "dataset"),
        "--chunk-rows",
        str(args.chunk_rows),
    ]
    if args.seq_len is not None:
        cmd += ["--seq-len", str(args.seq_len)]
    for item in args.set:
        cmd += ["--set", item]
    t1 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t_build = time.perf_counter() - t1
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    log_mib = (work / "log.parquet").stat().st_size / 2**20
    result = {
        "users": args.users,
        "log_rows": n_rows,
        "log_parquet_mib": round(log_mib, 1),
        "seq_len": manifest_seq_len(work / "dataset"),
        "chunk_rows": args.chunk_rows,
        "generate_and_write_seconds": round(t_gen, 1),
        "prepare_seconds": round(t_build, 1),
        "rows_per_second": round(n_rows / t_build),
        "prepare_peak_rss_mib": round(peak_mib),
    }
    print(json.dumps(result, indent=2))
    out = args.out or Path(__file__).parent / "results" / f"prepare_seq{result['seq_len']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def manifest_seq_len(dataset: Path) -> int:
    """The seq_len the child resolved (flag, --set or the source's default), read from its dataset.json."""
    return int(json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))["seq_len"])


def _write_inputs(args, work: Path, generate_synthetic_log, t0: float) -> tuple[int, float]:
    gen = generate_synthetic_log(args.users, seed=args.seed)
    gen.queries.to_parquet(work / "log.parquet", index=False)
    lines = []
    for name, kind in gen.tasks:
        lines += ["[[task]]", f'name = "{name}"', f'kind = "{kind}"']
        if kind != "next_query":
            gen.labels[name].to_csv(work / f"{name}.csv", index=False)
            lines.append(f'labels = "{name}.csv"')
        lines.append("")
    (work / "tasks.toml").write_text("\n".join(lines), encoding="utf-8")
    gen.interactions.to_csv(work / "inter.csv", index=False)
    n_rows = len(gen.queries)
    del gen
    return n_rows, time.perf_counter() - t0


if __name__ == "__main__":
    main()
