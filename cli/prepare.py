"""``querylearn prepare SOURCE --out DIR``: build the on-disk dataset every later stage reads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from querylearn.cli.app import app, console
from querylearn.cli.choices import PrepareSource, SplitMode
from querylearn.config_loader import stage_config
from querylearn.data.build import DEFAULT_SEQ_LEN, DEFAULT_SYNTHETIC_USERS, SOURCE_SEQ_LEN, BuildOptions
from querylearn.data.sources import SOURCES, prepare
from querylearn.errors import QuerylearnError


def render_summary(manifest: dict, seconds: float | None = None) -> Table:
    """The prepare summary: users, vocabulary, per-task users/labels/split sizes, skipped rows."""
    title = (
        f"{manifest['source']} dataset{' (synthetic)' if manifest['synthetic'] else ''}: "
        f"{manifest['n_users']:,} users, vocabulary {manifest['vocab_size']:,}, "
        f"seq_len {manifest['seq_len']}"
    )
    table = Table(title=title)
    for col in ("task", "kind", "metric", "users", "labels", "train", "valid", "test", "skipped rows"):
        table.add_column(col, justify="right" if col not in ("task", "kind", "metric") else "left")
    stats = manifest.get("summary", {}).get("tasks", {})
    for t in manifest["tasks"]:
        s = stats.get(t["name"], {})
        skipped = sum(v for k, v in s.items() if k.startswith("skipped"))
        table.add_row(
            t["name"],
            t["kind"],
            t["metric"],
            f"{t['n_users']:,}",
            f"{t['n_labels']:,}",
            f"{t['splits']['train']:,}",
            f"{t['splits']['valid']:,}",
            f"{t['splits']['test']:,}",
            f"{skipped:,}",
        )
    s = manifest.get("summary", {})
    caption = [
        f"log rows {s.get('log_rows', 0):,}",
        f"dropped empty queries {s.get('dropped_empty_query', 0):,}",
        f"rows mapped to <unk> {s.get('rows_mapped_to_unk', 0):,}",
    ]
    if "interactions" in manifest:
        i = manifest["interactions"]
        caption.append(
            f"interactions {i['n_rows']:,} rows / {i['n_users']:,} users / {i['n_items']:,} items "
            f"(skipped {s.get('interactions', {}).get('skipped_unknown_user_rows', 0):,} rows of users "
            "without queries)"
        )
    if seconds is not None:
        caption.append(f"built in {seconds:.1f}s")
    table.caption = "; ".join(caption)
    return table


# defaults quoted in the help texts are read from the config classes, where they are written once
B = BuildOptions
SEQ_LEN_HELP = (
    f"Queries kept per user (default {DEFAULT_SEQ_LEN}; "
    + ", ".join(f"{n} for {s}" for s, n in SOURCE_SEQ_LEN.items())
    + "; the files' length for teracon)."
)
LAST_HELP = (
    "[movielens-100k | kmrd | files] keep each user's latest interaction out of the query sequences and "
    "labels (interactions keep it), so coldstart-eval's held-out item is unseen by the representations."
)


@app.command("prepare")
def prepare_cli(
    source: Annotated[PrepareSource, typer.Argument(help="The data source.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", help="Output dataset directory (dataset.json + arrays).")],
    users: Annotated[
        int | None,
        typer.Option(
            help=f"[synthetic] users (default {DEFAULT_SYNTHETIC_USERS}); [files] keep the first N user ids."
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help=f"Seed of the generator and of the splits (default {B.seed}).")
    ] = None,
    noisy_task: Annotated[
        bool | None,
        typer.Option(
            "--noisy-task/--no-noisy-task",
            help="[synthetic] add TERACON's uninformative task TN (default no).",
        ),
    ] = None,
    path: Annotated[
        Path | None, typer.Option(help="[movielens-100k | kmrd | teracon] the data folder.")
    ] = None,
    queries: Annotated[
        Path | None,
        typer.Option(
            help="[files] query log CSV/Parquet (user_id, timestamp, query): a file, a folder of parts, "
            "or a quoted glob."
        ),
    ] = None,
    tasks: Annotated[
        Path | None, typer.Option(help="[files] tasks TOML ([[task]] name, kind, labels).")
    ] = None,
    interactions: Annotated[
        Path | None, typer.Option(help="[files] user_id, item_id, timestamp (optional).")
    ] = None,
    items: Annotated[Path | None, typer.Option(help="[files] item_id, text: item titles (optional).")] = None,
    seq_len: Annotated[int | None, typer.Option(help=SEQ_LEN_HELP)] = None,
    min_count: Annotated[
        int | None, typer.Option(help=f"Queries seen fewer times map to <unk> (default {B.min_count}).")
    ] = None,
    min_label_count: Annotated[
        int | None,
        typer.Option(
            help=f"Drop label rows of labels seen fewer times (counted; default {B.min_label_count})."
        ),
    ] = None,
    split: Annotated[
        SplitMode | None,
        typer.Option(help="user (default: one user-level 80/5/15 split) | example (parity mode)."),
    ] = None,
    chunk_rows: Annotated[
        int | None, typer.Option(help=f"Rows per chunk when reading the log (default {B.chunk_rows:_}).")
    ] = None,
    exclude_last_interaction: Annotated[
        bool | None, typer.Option("--exclude-last-interaction/--include-last-interaction", help=LAST_HELP)
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML with BuildOptions keys (docs/config.md); --set/flags override it."
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override one config key: --set section.key=value (TOML value); repeatable."
        ),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="[files] where the log is grouped: pandas (in memory) | duckdb (on disk, bounded by "
            "--memory-limit) | auto (duckdb from 512 MiB of query files or with --memory-limit). "
            "Same output either way."
        ),
    ] = "auto",
    memory_limit: Annotated[
        str | None,
        typer.Option(
            help="[files] DuckDB's memory limit, e.g. 4GB (it spills to a temporary folder beyond it)."
        ),
    ] = None,
) -> None:
    """Build a dataset directory from a source and print its summary table (config: OUT/config.toml)."""
    if source not in SOURCES:
        raise QuerylearnError(f"unknown source '{source}'; choose one of {', '.join(SOURCES)}")
    flags = {
        "seq_len": seq_len,
        "min_count": min_count,
        "min_label_count": min_label_count,
        "split": split,
        "seed": seed,
        "chunk_rows": chunk_rows,
        "exclude_last_interaction": exclude_last_interaction,
        "users": users,
        "synthetic.noisy_task": noisy_task,
    }
    opts = stage_config(BuildOptions, config=config, sets=sets, flags=flags)
    t0 = time.perf_counter()
    manifest = prepare(
        source,
        out,
        opts,
        path=path,
        queries=queries,
        tasks=tasks,
        interactions=interactions,
        items=items,
        engine=engine,
        memory_limit=memory_limit,
    )  # runtime: not in config.toml
    console.print(render_summary(manifest, time.perf_counter() - t0))
    console.print(f"wrote {out}/dataset.json")
