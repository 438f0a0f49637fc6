"""Dataset sources for ``querylearn prepare``: files, synthetic, movielens-100k, kmrd, teracon.

Each ``prepare_*`` function builds the raw tables and calls :func:`querylearn.data.build.assemble`,
so every source goes through the same validated path.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from querylearn.artifacts import check_out_dir
from querylearn.config_loader import write_config
from querylearn.data.build import (
    BuildOptions,
    LabelTable,
    LogAccumulator,
    assemble,
    frame_from_records,
    metric_for,
)
from querylearn.data.outofcore import DuckLogAccumulator, choose_engine, expand_inputs, iter_chunks
from querylearn.data.readers import iter_table, natural_sorted, parse_timestamps
from querylearn.data.tasks import load_task_sequence
from querylearn.errors import DataError

SOURCES = ("synthetic", "movielens-100k", "kmrd", "files", "teracon")


def _read_all(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    return pd.concat(list(iter_table(path, required)), ignore_index=True)


def _first_users(paths: list[Path], n: int, chunk_rows: int) -> set[str]:
    """The first ``n`` user ids of a query log in natural order (integers numerically)."""
    ids: set[str] = set()
    for _, chunk in iter_chunks(paths, ("user_id",), chunk_rows=chunk_rows):
        ids.update(chunk["user_id"].str.strip())
    return set(natural_sorted(ids)[:n])


def _held_out_interactions(inter: pd.DataFrame, path: str) -> pd.DataFrame:
    """Each user's latest interaction (by timestamp, ties by file order: the item coldstart-eval
    holds out) -> frame indexed by user_id with item_id and ns (its time, int64 nanoseconds)."""
    f = pd.DataFrame(
        {
            "user_id": inter["user_id"].str.strip().to_numpy(),
            "item_id": inter["item_id"].str.strip().to_numpy(),
            "ns": parse_timestamps(path, inter["timestamp"], inter["_row"]),
            "order": np.arange(len(inter)),
        }
    )
    last = f.sort_values(["user_id", "ns", "order"], kind="stable").groupby("user_id", sort=False).tail(1)
    return last.set_index("user_id")[["item_id", "ns"]]


def _read_log(
    log: LogAccumulator,
    paths: list[Path],
    opts: BuildOptions,
    keep_users: set[str] | None,
    held: pd.DataFrame | None,
) -> dict:
    """Stream the query log into ``log``, dropping rows of users outside ``keep_users`` and, per
    user in ``held``, every query at or after the held-out interaction's time. Returns the counts."""
    dropped = {"other_users": 0, "at_or_after_held_out": 0}
    for path, chunk in iter_chunks(
        paths, ("user_id", "timestamp", "query"), chunk_rows=opts.chunk_rows, allow_empty=("query",)
    ):
        log.path = str(path)  # errors name the file being read
        if keep_users is None and held is None:
            log.add(chunk)
            continue
        ns = parse_timestamps(path, chunk["timestamp"], chunk["_row"])  # validates every row
        uid = chunk["user_id"].str.strip()
        keep = np.ones(len(chunk), dtype=bool)
        if keep_users is not None:
            keep &= uid.isin(keep_users).to_numpy()
            dropped["other_users"] += int((~keep).sum())
        if held is not None:
            cut = uid.map(held["ns"])
            late = (cut.notna().to_numpy() & (ns >= cut.fillna(0).to_numpy(dtype=np.int64))) & keep
            dropped["at_or_after_held_out"] += int(late.sum())
            keep &= ~late
        log.add(chunk[keep])
        log.rows_read += int((~keep).sum())  # log_rows counts every row of the file
    return dropped


def prepare_files(
    out: str | Path,
    *,
    queries: str | Path,
    tasks: str | Path,
    interactions: str | Path | None = None,
    items: str | Path | None = None,
    opts: BuildOptions,
    users: int | None = None,
    engine: str = "auto",
    memory_limit: str | None = None,
) -> dict:
    """The generic documented format: query log + tasks TOML (+ interactions, + item texts).

    ``users``: keep only the first N user ids of the log (natural order). With
    ``opts.exclude_last_interaction``, each user's latest interaction (the item coldstart-eval holds
    out) is hidden from the representation: the user's queries at or after its time are dropped, and
    so are multi_target label rows equal to its item id; the interactions keep it.
    ``queries``: a file, a folder of Parquet/CSV parts or a glob (outofcore.expand_inputs); ``engine``
    (auto | pandas | duckdb) and ``memory_limit`` choose where the log is grouped (outofcore.choose_engine).
    """
    specs = load_task_sequence(tasks)
    if users is not None and users < 1:
        raise DataError("files", f"--users {users} must be at least 1", fix="omit --users to keep every user")
    if opts.exclude_last_interaction and not interactions:
        raise DataError(
            "files",
            "--exclude-last-interaction needs --interactions (the latest interaction "
            "of each user is what is held out)",
            fix="pass --interactions FILE or drop the flag",
        )
    inter, held = None, None
    if interactions and opts.exclude_last_interaction:  # the held-out item needs the whole table first
        inter = _read_all(Path(interactions), ("user_id", "item_id", "timestamp"))
        held = _held_out_interactions(inter, str(interactions))
    elif interactions:  # streamed in chunks when the dataset is assembled (build._interactions)
        columns = ("user_id", "item_id", "timestamp")
        chunks = iter_table(Path(interactions), columns, chunk_rows=opts.chunk_rows)
        first = next(chunks, None)  # a missing file or column is reported now, before the log is read
        inter = itertools.chain([] if first is None else [first], chunks)
    paths = expand_inputs(queries)
    keep_users = _first_users(paths, users, opts.chunk_rows) if users is not None else None
    args = dict(
        paths=paths,
        specs=specs,
        queries=queries,
        tasks=tasks,
        interactions=interactions,
        items=items,
        opts=opts,
        users=users,
        inter=inter,
        held=held,
        keep_users=keep_users,
    )
    if choose_engine(engine, paths, memory_limit) == "duckdb":
        with DuckLogAccumulator(opts.seq_len, path=str(queries), memory_limit=memory_limit) as log:
            return _files_from_log(out, log, **args)
    return _files_from_log(out, LogAccumulator(opts.seq_len, path=str(queries)), **args)


def _files_from_log(
    out, log, *, paths, specs, queries, tasks, interactions, items, opts, users, inter, held, keep_users
) -> dict:
    """The rest of ``prepare_files`` once the engine's log accumulator exists."""
    dropped = _read_log(log, paths, opts, keep_users, held)
    log.path = str(queries)
    tables = []
    held_label_rows = 0
    for s in specs:
        if s.labels is not None and held is None:  # read when its task is assembled, one at a time
            load = functools.partial(_read_all, s.labels, ("user_id", "label"))
            tables.append(LabelTable(s.name, s.kind, s.metric, None, str(s.labels), load=load))
            continue
        frame = None if s.labels is None else _read_all(s.labels, ("user_id", "label"))
        if frame is not None and held is not None and s.kind == "multi_target":
            same = (
                frame["label"].str.strip() == frame["user_id"].str.strip().map(held["item_id"])
            ).to_numpy()
            held_label_rows += int(same.sum())
            frame = frame[~same]
        tables.append(LabelTable(s.name, s.kind, s.metric, frame, str(s.labels) if s.labels else "<log>"))
    texts = None
    if items:
        it = _read_all(Path(items), ("item_id", "text"))
        texts = dict(zip(it["item_id"].str.strip(), it["text"], strict=True))
    extra: dict = {
        "inputs": {
            "queries": str(queries),
            "tasks": str(tasks),
            "interactions": str(interactions) if interactions else None,
        }
    }
    if users is not None:
        extra["users_limit"] = {
            "users": users,
            "rule": "first N user ids of the log in natural order",
            "skipped_log_rows": dropped["other_users"],
        }
    if held is not None:
        extra["excluded_last_interaction_rows"] = dropped["at_or_after_held_out"]
        extra["excluded_last_interaction_label_rows"] = held_label_rows
    return assemble(
        out,
        log,
        tables,
        opts,
        source="files",
        synthetic=False,
        interactions=inter,
        interactions_path=str(interactions),
        item_texts=texts,
        extra=extra,
    )


def prepare_synthetic(
    out: str | Path, *, users: int, seed: int, noisy_task: bool, opts: BuildOptions
) -> dict:
    """The embedded default data: a generated Korean search log (labelled synthetic)."""
    from querylearn.data.synthetic import generate_synthetic_log

    if users < 100:
        # below ~100 users some age classes occur once and cannot be both trained and evaluated
        raise DataError("synthetic", f"--users {users} is too small", fix="use --users 100 or more")
    gen = generate_synthetic_log(users, seed=seed, noisy_task=noisy_task)
    log = LogAccumulator(opts.seq_len, path="synthetic")
    q = gen.queries
    for start in range(0, len(q), opts.chunk_rows):
        part = q.iloc[start : start + opts.chunk_rows]
        log.add(
            frame_from_records(
                {"user_id": part["user_id"], "timestamp": part["timestamp"], "query": part["query"]}
            )
        )
    tables = []
    for name, kind in gen.tasks:
        frame = None
        if kind != "next_query":
            lab = gen.labels[name]
            frame = frame_from_records({"user_id": lab["user_id"], "label": lab["label"]})
        tables.append(LabelTable(name, kind, metric_for(kind), frame, f"synthetic:{name}"))
    inter = gen.interactions
    inter_frame = frame_from_records(
        {"user_id": inter["user_id"], "item_id": inter["item_id"], "timestamp": inter["timestamp"]}
    )
    texts = dict(zip(gen.catalogue["item_id"].astype(str), gen.catalogue["title"].astype(str), strict=True))
    return assemble(
        out,
        log,
        tables,
        opts,
        source="synthetic",
        synthetic=True,
        interactions=inter_frame,
        interactions_path="synthetic:interactions",
        item_texts=texts,
        extra={"generator": {"users": users, "seed": seed, "noisy_task": noisy_task}},
    )


# MovieLens-1M age buckets (applied to ML-100K's exact ages).
ML_AGE_BUCKETS = [
    (0, 17, "Under 18"),
    (18, 24, "18-24"),
    (25, 34, "25-34"),
    (35, 44, "35-44"),
    (45, 49, "45-49"),
    (50, 55, "50-55"),
    (56, 200, "56+"),
]


def _ml_age(age: int) -> str:
    for lo, hi, name in ML_AGE_BUCKETS:
        if lo <= age <= hi:
            return name
    raise ValueError(age)


def _need(path: Path, names: tuple[str, ...]) -> None:
    if not path.is_dir():
        raise DataError(path, "folder not found", fix="pass --path to the unpacked data folder")
    for n in names:
        if not (path / n).is_file():
            raise DataError(
                path / n, "file not found", fix=f"--path must point at the folder holding {', '.join(names)}"
            )


def _without_latest(frame: pd.DataFrame, user: str) -> tuple[pd.DataFrame, int]:
    """Drop each user's latest row; ``frame`` must already be sorted chronologically within users."""
    latest = frame.groupby(user, sort=False).tail(1).index
    return frame.drop(index=latest), len(latest)


def prepare_movielens_100k(out: str | Path, *, path: str | Path, opts: BuildOptions) -> dict:
    """MovieLens-100K: T1 chronological movies not rated 4/5 (last seq_len, default 30), T2 rated 4,
    T3 rated 5, T4 gender, T5 age group (ML-1M buckets), T6 occupation; titles are the item text."""
    path = Path(path)
    _need(path, ("u.data", "u.user", "u.item"))
    ratings = pd.read_csv(
        path / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"], dtype=np.int64
    )
    users = pd.read_csv(
        path / "u.user", sep="|", header=None, names=["user", "age", "gender", "occupation", "zip"], dtype=str
    )
    items = pd.read_csv(
        path / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        usecols=[0, 1],
        names=["item", "title"],
        dtype=str,
    )
    title = dict(zip(items["item"].astype(int), items["title"], strict=True))
    ratings = ratings.sort_values(["user", "ts", "item"], kind="stable")
    history, held_out = ratings, 0
    if opts.exclude_last_interaction:
        history, held_out = _without_latest(ratings, "user")
    low = history[~history["rating"].isin([4, 5])]
    log = LogAccumulator(opts.seq_len, path=str(path / "u.data"))
    log.add(
        frame_from_records({"user_id": low["user"], "timestamp": low["ts"], "query": low["item"].map(title)})
    )
    r4 = history[history["rating"] == 4]
    r5 = history[history["rating"] == 5]
    tables = [
        LabelTable("T1", "next_query", "mrr@5", None, str(path / "u.data")),
        LabelTable(
            "T2",
            "multi_target",
            "mrr@5",
            frame_from_records({"user_id": r4["user"], "label": r4["item"]}),
            str(path / "u.data"),
        ),
        LabelTable(
            "T3",
            "multi_target",
            "mrr@5",
            frame_from_records({"user_id": r5["user"], "label": r5["item"]}),
            str(path / "u.data"),
        ),
        LabelTable(
            "T4",
            "classify",
            "accuracy",
            frame_from_records({"user_id": users["user"], "label": users["gender"]}),
            str(path / "u.user"),
        ),
        LabelTable(
            "T5",
            "classify",
            "accuracy",
            frame_from_records({"user_id": users["user"], "label": users["age"].astype(int).map(_ml_age)}),
            str(path / "u.user"),
        ),
        LabelTable(
            "T6",
            "classify",
            "accuracy",
            frame_from_records({"user_id": users["user"], "label": users["occupation"]}),
            str(path / "u.user"),
        ),
    ]
    inter = frame_from_records(
        {"user_id": ratings["user"], "item_id": ratings["item"], "timestamp": ratings["ts"]}
    )
    texts = {str(k): v for k, v in title.items()}
    return assemble(
        out,
        log,
        tables,
        opts,
        source="movielens-100k",
        synthetic=False,
        interactions=inter,
        interactions_path=str(path / "u.data"),
        item_texts=texts,
        extra={"inputs": {"path": str(path)}, "excluded_last_interaction_rows": held_out},
    )


def _favourite(rated: pd.DataFrame, attr: pd.DataFrame, col: str) -> pd.DataFrame:
    """Per user: the attribute value occurring most often over the user's rated movies.

    Ties are broken by the value's global frequency over all ratings (more frequent wins), then by
    name. Movies without the attribute do not count; users none of whose movies has it get no label.
    """
    m = rated[["user", "movie"]].merge(attr[["movie", col]], on="movie", how="inner")
    glob = m[col].value_counts()
    per = m.groupby(["user", col]).size().rename("n").reset_index()
    per["g"] = per[col].map(glob)
    per = per.sort_values(["user", "n", "g", col], ascending=[True, False, False, True], kind="stable")
    best = per.groupby("user", sort=False).head(1)
    return pd.DataFrame({"user_id": best["user"].astype(str), "label": best[col].astype(str)})


def prepare_kmrd(out: str | Path, *, path: str | Path, opts: BuildOptions) -> dict:
    """KMRD-small: T1 each user's rating sequence (Korean titles), T2 movies rated 10,
    T3 favourite genre, T4 favourite production country (see :func:`_favourite`); ratings are
    the interactions."""
    path = Path(path)
    _need(path, ("rates.csv", "movies.txt", "genres.csv", "countries.csv"))
    rates = _read_all(path / "rates.csv", ("user", "movie", "rate", "time"))
    for c in ("rate", "time"):
        bad = pd.to_numeric(rates[c], errors="coerce").isna()
        if bad.any():
            r = rates[bad].iloc[0]
            raise DataError(
                path / "rates.csv",
                f"{c} {r[c]!r} is not a number",
                row=int(r["_row"]),
                fix="fix or delete the row",
            )
    rates = rates.assign(
        rate=rates["rate"].astype(np.int64),
        time=rates["time"].astype(np.int64),
        user=rates["user"].str.strip(),
        movie=rates["movie"].str.strip(),
    )
    movies = pd.read_csv(path / "movies.txt", sep="\t", dtype=str, keep_default_na=False)
    genres = pd.read_csv(path / "genres.csv", dtype=str, keep_default_na=False)
    countries = pd.read_csv(path / "countries.csv", dtype=str, keep_default_na=False)
    # some movies have an empty title: they get the text "movie <id>" (counted in the manifest)
    title = {m: t.strip() for m, t in zip(movies["movie"], movies["title"], strict=True) if t.strip()}
    rates = rates.sort_values(["user", "time", "_row"], kind="stable")
    history, held_out = rates, 0
    if opts.exclude_last_interaction:
        history, held_out = _without_latest(rates, "user")
    log = LogAccumulator(opts.seq_len, path=str(path / "rates.csv"))
    log.add(
        frame_from_records(
            {
                "user_id": history["user"],
                "timestamp": history["time"],
                "query": history["movie"].map(lambda m: title.get(m, f"movie {m}")),
            }
        )
    )
    r10 = history[history["rate"] == 10]
    tables = [
        LabelTable("T1", "next_query", "mrr@5", None, str(path / "rates.csv")),
        LabelTable(
            "T2",
            "multi_target",
            "mrr@5",
            frame_from_records({"user_id": r10["user"], "label": r10["movie"]}),
            str(path / "rates.csv"),
        ),
        LabelTable(
            "T3",
            "classify",
            "accuracy",
            frame_from_records(_favourite(history, genres, "genre")),
            str(path / "genres.csv"),
        ),
        LabelTable(
            "T4",
            "classify",
            "accuracy",
            frame_from_records(_favourite(history, countries, "country")),
            str(path / "countries.csv"),
        ),
    ]
    inter = frame_from_records(
        {"user_id": rates["user"], "item_id": rates["movie"], "timestamp": rates["time"]}
    )
    return assemble(
        out,
        log,
        tables,
        opts,
        source="kmrd",
        synthetic=False,
        interactions=inter,
        interactions_path=str(path / "rates.csv"),
        item_texts=title,
        extra={
            "inputs": {"path": str(path)},
            "movies_without_title": int((~rates["movie"].isin(title)).sum()),
            "excluded_last_interaction_rows": held_out,
        },
    )


def prepare(
    source: str,
    out: str | Path,
    opts: BuildOptions,
    *,
    users: int | None = None,
    noisy_task: bool | None = None,
    path: str | Path | None = None,
    queries: str | Path | None = None,
    tasks: str | Path | None = None,
    interactions: str | Path | None = None,
    items: str | Path | None = None,
    seq_len_from_files: bool = False,
    engine: str = "auto",
    memory_limit: str | None = None,
) -> dict:
    """Library entry of ``prepare``: dispatch on ``source``; returns the manifest.

    ``users`` / ``noisy_task`` (when given) replace ``opts.users`` / ``opts.synthetic.noisy_task``.
    ``opts.users``: synthetic: users to generate; files: keep the first N users (default all);
    movielens-100k / kmrd / teracon: refused (the datasets are used whole). Unset ``seq_len`` /
    ``users`` become the source's defaults (:meth:`BuildOptions.for_source`; teracon: the files' length).
    ``seq_len_from_files`` [teracon]: keep the files' sequence length even when ``opts.seq_len`` is set.
    """
    check_out_dir(out)
    if users is not None:
        opts = replace(opts, users=users)
    if noisy_task is not None:
        opts = replace(opts, synthetic=replace(opts.synthetic, noisy_task=noisy_task))
    if source in ("movielens-100k", "kmrd", "teracon") and opts.users is not None:
        raise DataError(
            source,
            f"--users applies to synthetic and files, not {source}",
            fix="drop --users (the dataset is used whole)",
        )
    if source == "teracon":  # the official TERACON/CONURE task files (querylearn/data/teracon_format.py)
        from querylearn.data.teracon_format import prepare_teracon

        if path is None:
            raise DataError(
                source,
                "needs --path to the folder of t1..., t2..., ... files",
                fix="querylearn prepare teracon --path FOLDER --out DIR",
            )
        from_files = seq_len_from_files or opts.seq_len is None
        manifest = prepare_teracon(out, path=path, opts=opts, seq_len_from_files=from_files)
        write_config(
            out, replace(opts, seq_len=manifest["seq_len"])
        )  # the resolved options, as assemble does
        return manifest
    opts = opts.for_source(source)
    if source == "synthetic":
        return prepare_synthetic(
            out, users=opts.users, seed=opts.seed, noisy_task=opts.synthetic.noisy_task, opts=opts
        )
    if source in ("movielens-100k", "kmrd"):
        if path is None:
            raise DataError(
                source,
                "needs --path to the data folder",
                fix=f"querylearn prepare {source} --path FOLDER --out DIR",
            )
        fn = prepare_movielens_100k if source == "movielens-100k" else prepare_kmrd
        return fn(out, path=path, opts=opts)
    if queries is None or tasks is None:
        raise DataError(
            source, "needs --queries LOG and --tasks TASKS.toml", fix="see docs/data.md for the formats"
        )
    return prepare_files(
        out,
        queries=queries,
        tasks=tasks,
        interactions=interactions,
        items=items,
        opts=opts,
        users=opts.users,
        engine=engine,
        memory_limit=memory_limit,
    )
