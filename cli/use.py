"""Using a trained model: ``export-model``, ``embed-users`` and ``neighbours`` (thin wrappers over
:mod:`querylearn.pretrained`, :mod:`querylearn.userlog` and :mod:`querylearn.neighbours`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from querylearn.cli.app import app, console
from querylearn.errors import QuerylearnError


@app.command("export-model")
def export_model_cli(
    run: Annotated[Path, typer.Option("--run", help="Run directory of 'querylearn train-sequence'.")],
    out: Annotated[
        Path, typer.Option("--out", help="Model folder to write (config.json, model.safetensors, ...).")
    ],
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="Default task of encode(); for 'single' runs, whose model is exported. Default: the last.",
        ),
    ] = None,
) -> None:
    """Write a self-contained model folder that UserEncoder.from_pretrained(DIR) loads."""
    from querylearn.pretrained import export_model

    result = export_model(run, out, task=task)
    fit = result.map_fit
    unseen = (
        f"mapped from the query table (fit R² {fit['r2']:.4f} on {fit['n_fit']:,} known queries)"
        if fit
        else "<unk> (the run's query table embeds no text)"
    )
    console.print(
        f"wrote {out}: {result.vocab_size:,} queries, {result.dim} dims, tasks {', '.join(result.tasks)} "
        f"(default {result.task}); unseen queries -> {unseen}",
        highlight=False,
    )


@app.command("embed-users")
def embed_users_cli(
    model: Annotated[
        Path, typer.Option("--model", help="Model folder written by 'querylearn export-model'.")
    ],
    queries: Annotated[
        Path,
        typer.Option(
            "--queries", help="Query log CSV/Parquet: user_id, timestamp, query (the 'prepare files' format)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write (user_id, embedding).")],
    task: Annotated[
        str | None, typer.Option("--task", help="Task whose mask is used (default: the model's).")
    ] = None,
    unseen: Annotated[
        str,
        typer.Option(
            "--unseen", help="map (queries outside the vocabulary get a mapped vector when possible) | unk."
        ),
    ] = "map",
    wide: Annotated[
        bool, typer.Option("--wide", help="One float32 column per dimension (v0..v{D-1}).")
    ] = False,
    text_model: Annotated[
        str | None,
        typer.Option(
            "--text-model", help="Folder of the query table's source model, if it moved since embed-init."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Users per forward pass.")] = 1024,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per chunk when reading the log.")
    ] = 500_000,
) -> None:
    """Embed every user of a raw query log with an exported model (no prepared dataset needed)."""
    from querylearn.userlog import embed_users

    if out.suffix.lower() != ".parquet":
        raise QuerylearnError(f"--out {out}: embed-users writes Parquet; name the file *.parquet")
    result = embed_users(
        model,
        queries,
        out,
        task=task,
        unseen=unseen,
        wide=wide,
        batch_size=batch_size,
        chunk_rows=chunk_rows,
        text_model=text_model,
    )
    e = result.encoded
    console.print(
        f"wrote {len(result.user_ids):,} users x {e.vectors.shape[1]} dims (task {e.task}) to {out}; "
        f"{e.n_positions:,} query positions, {e.n_unseen_mapped:,} outside the vocabulary mapped "
        f"({len(e.unseen_mapped):,} distinct queries), {e.n_unseen_unk:,} as <unk>",
        highlight=False,
    )


@app.command("neighbours")
def neighbours_cli(
    emb: Annotated[
        Path | None,
        typer.Option("--emb", help="Query vectors: an embed-init table or an export-model folder."),
    ] = None,
    users: Annotated[
        Path | None, typer.Option("--users", help="User vectors Parquet (export-users / embed-users).")
    ] = None,
    query: Annotated[list[str] | None, typer.Option("--query", help="Query text; repeatable.")] = None,
    user: Annotated[list[str] | None, typer.Option("--user", help="user_id of --users; repeatable.")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Neighbours per query or user.")] = 10,
    method: Annotated[
        str,
        typer.Option("--method", help="auto (HNSW from 50,000 rows when faiss is installed) | exact | hnsw."),
    ] = "auto",
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="With --users --query: the model that embeds the query as a one-query user."
        ),
    ] = None,
    text_model: Annotated[
        str | None,
        typer.Option("--text-model", help="Folder of the query table's source model, if it moved."),
    ] = None,
) -> None:
    """Nearest queries (--emb --query) or users (--users --user, or --users --query --model) by cosine
    similarity."""
    from querylearn.neighbours import query_neighbours, user_neighbours

    if (emb is None) == (users is None):
        raise QuerylearnError("give one of --emb EMB (query neighbours) or --users FILE (user neighbours)")
    if not query and not user:
        raise QuerylearnError("give --query TEXT or --user ID (repeatable)")
    if emb is not None:
        if user:
            raise QuerylearnError("--user looks up a user_id; use it with --users FILE")
        results = query_neighbours(emb, list(query), k, method=method, text_model=text_model)
        what = f"queries of {emb}"
    else:
        results = user_neighbours(
            users,
            user_ids=list(user or []),
            queries=list(query or []),
            model=model,
            k=k,
            method=method,
            text_model=text_model,
        )
        what = f"users of {users}"
    for res in results:
        note = " (not in the vocabulary: embedded)" if res.embedded else ""
        table = Table(title=f"nearest to {res.label}{note}", caption=f"{what}; {res.method} search")
        table.add_column("rank", justify="right")
        table.add_column("neighbour")
        table.add_column("cosine", justify="right")
        for rank, n in enumerate(res.neighbours, 1):
            table.add_row(str(rank), n.key, f"{n.score:.4f}")
        console.print(table)
