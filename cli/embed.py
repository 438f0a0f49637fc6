"""``querylearn embed-init`` and ``querylearn embed-queries`` (thin wrappers over querylearn.embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from querylearn.cli.app import app, console
from querylearn.cli.choices import EmbedSource, Pooling, Segment
from querylearn.config_loader import stage_config
from querylearn.embeddings.base import DEFAULT_KOBERT_MODEL, DEFAULT_RANDOM_DIM, EmbedInitConfig

C = EmbedInitConfig  # defaults quoted in the help texts are read from the config class (written once)


@app.command("embed-init")
def embed_init_cli(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory written by 'querylearn prepare'.")],
    out: Annotated[Path, typer.Option("--out", help="Output EMB_DIR (vocab.json, vectors.npy, meta.json).")],
    source: Annotated[
        EmbedSource | None,
        typer.Option("--source", help="The query vectors' source (required here or in --config)."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help=f"Model folder or hub id (kobert: default {DEFAULT_KOBERT_MODEL}; hf: required)."
        ),
    ] = None,
    pooling: Annotated[
        Pooling | None,
        typer.Option("--pooling", help="subword-mean (default) | contextual; kobert and hf only."),
    ] = None,
    segment: Annotated[
        Segment | None, typer.Option("--segment", help="none (default) | kiwi (morpheme pre-segmentation).")
    ] = None,
    dim: Annotated[
        int | None,
        typer.Option(
            "--dim",
            help=f"Output width: random table width (default {DEFAULT_RANDOM_DIM}) or PCA to N (text).",
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help=f"Seed of the random table (default {C.seed}).")
    ] = None,
    include_special: Annotated[
        bool | None,
        typer.Option(
            "--include-special/--no-include-special", help="Also average [CLS] and [SEP] (default: no)."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help=f"Queries per forward pass (contextual, e5; default {C.batch_size})."
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            help=f"Tokens per query incl. [CLS]/[SEP] for contextual pooling (default {C.max_length}).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML with EmbedInitConfig keys (docs/config.md); --set and the flags override it.",
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override one config key: --set key=value (TOML value); repeatable."),
    ] = None,
) -> None:
    """Turn a dataset's query vocabulary into an embedding table (train-sequence's input embedding)."""
    from querylearn.embeddings import embed_init

    flags = {
        "source": source,
        "model": model,
        "pooling": pooling,
        "segment": segment,
        "dim": dim,
        "seed": seed,
        "include_special": include_special,
        "batch_size": batch_size,
        "max_length": max_length,
    }
    cfg = stage_config(EmbedInitConfig, config=config, sets=sets, flags=flags).require_source()
    table = embed_init(data, out, cfg)
    meta = table.meta
    summary = Table(title=f"embed-init -> {out}", show_header=False)
    summary.add_row("method", meta["method"])
    summary.add_row("model", str((meta.get("model") or {}).get("name_or_path", "-")))
    summary.add_row("queries", f"{table.vocab_size} (ids 0..{table.vocab_size - 1}, incl. <pad> <unk>)")
    summary.add_row("dim", f"{table.dim} (native {meta['native_dim']})")
    if meta.get("projection"):
        summary.add_row("PCA explained variance", f"{meta['projection']['explained_variance_total']:.4f}")
    if meta.get("counts"):
        c = meta["counts"]
        summary.add_row(
            "only [UNK] / single chars / empty",
            f"{c['n_only_unk']} / {c['n_only_single_chars']} / {c['n_empty']}",
        )
    summary.add_row("time", f"{meta['timing']['total_s']:.2f} s")
    console.print(summary)


@app.command("embed-queries")
def embed_queries_cli(
    emb: Annotated[Path, typer.Option("--emb", help="EMB_DIR written by 'querylearn embed-init'.")],
    queries: Annotated[
        Path,
        typer.Option(
            "--queries", help="Text file, one query per line (UTF-8), or Parquet with a 'query' column."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help=(
                "Output .npy (float32 [lines, dim]; OUT.json describes it) "
                "or .parquet (query, embedding, ...)."
            ),
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Use this model folder instead of the one recorded in meta.json (hashes must match).",
        ),
    ] = None,
) -> None:
    """Embed new queries with the same source, settings and projection as an embedding table."""
    from querylearn.embeddings import embed_queries, load_embedding_table
    from querylearn.embeddings.query_files import check_output, read_queries, write_vectors

    check_output(out)
    table = load_embedding_table(emb)
    texts = read_queries(queries)
    result = embed_queries(table, texts, model=model)
    side = write_vectors(out, texts, result, table)
    console.print(
        f"embedded {len(texts)} queries -> {out} [{result.vectors.shape[0]} x {result.vectors.shape[1]}] "
        f"({int(result.in_vocab.sum())} already in the table, {int(result.empty.sum())} empty -> <unk> row); "
        f"details in {side}",
        highlight=False,
    )
