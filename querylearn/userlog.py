"""``embed-users``: user vectors straight from a raw query log, with no prepared dataset.

The log is the ``prepare files`` format (CSV or Parquet: ``user_id, timestamp, query``; epoch seconds
or ISO-8601), read in chunks by the same reader and accumulator as ``prepare``: queries normalised,
empty ones dropped (counted), each user's last ``seq_len`` queries kept in (timestamp, row) order,
users in the same natural order. A user of the training data therefore gets exactly the vector
``export-users`` gives them. Queries outside the model's vocabulary are mapped or become ``<unk>``
(:mod:`querylearn.querymap`); the counts go into the file's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from querylearn import __version__
from querylearn.data.build import LogAccumulator
from querylearn.data.readers import CHUNK_ROWS, natural_sorted
from querylearn.pretrained import EncodedUsers, UserEncoder
from querylearn.userfile import write_user_vectors


@dataclass(frozen=True)
class EmbeddedUsers:
    """What ``embed_users`` wrote: the file, its user ids, and the encoding counts."""

    path: Path
    user_ids: list[str]
    encoded: EncodedUsers
    info: dict


def read_histories(
    log: str | Path, seq_len: int, *, chunk_rows: int = CHUNK_ROWS
) -> tuple[list[str], list[list[str]], dict]:
    """(user_ids in natural order, normalised histories oldest first (last ``seq_len``), counts)."""
    acc = LogAccumulator(seq_len)
    acc.read_file(log, chunk_rows)
    kept = acc.kept
    user_ids = natural_sorted(kept["user_id"].unique())
    grouped = {u: list(g["query"]) for u, g in kept.groupby("user_id", sort=False)}
    return (
        user_ids,
        [grouped[u] for u in user_ids],
        {"rows": acc.rows_read, "dropped_empty_query": acc.dropped_empty},
    )


def embed_users(
    model: str | Path | UserEncoder,
    log: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    unseen: str = "map",
    wide: bool = False,
    batch_size: int = 1024,
    chunk_rows: int = CHUNK_ROWS,
    text_model: str | None = None,
) -> EmbeddedUsers:
    """Embed every user of ``log`` with the model folder ``model`` and write the Parquet file ``out``."""
    encoder = (
        model if isinstance(model, UserEncoder) else UserEncoder.from_pretrained(model, text_model=text_model)
    )
    user_ids, histories, counts = read_histories(log, encoder.seq_len, chunk_rows=chunk_rows)
    encoded = encoder.encode_detailed(histories, task, unseen=unseen, batch_size=batch_size, normalized=True)
    info = {
        "querylearn_version": __version__,
        "producer": "embed-users",
        "model": str(encoder.path) if encoder.path else None,
        "task": encoded.task,
        "masking": encoder.module.masking,
        "s": encoder.smax,
        "pooling": "last-position",
        "users": "log",
        "n_users": len(user_ids),
        "dim": encoder.dim,
        "log": str(log),
        "log_rows": counts["rows"],
        "dropped_empty_query": counts["dropped_empty_query"],
        "unseen_rule": unseen if encoder.maps_unseen_queries else "unk",
        **encoded.describe(),
    }
    info = write_user_vectors(out, user_ids, encoded.vectors, info, wide=wide)
    return EmbeddedUsers(Path(out), user_ids, encoded, info)
