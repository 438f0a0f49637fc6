"""Public-data adapters, built from ../shared/data (never copied into the repo)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from querylearn.data.build import BuildOptions
from querylearn.data.dataset import load_dataset
from querylearn.data.sources import ML_AGE_BUCKETS, _favourite, prepare_kmrd, prepare_movielens_100k
from querylearn.errors import DataError


@pytest.fixture(scope="module")
def ml(tmp_path_factory, ml100k_dir):
    out = tmp_path_factory.mktemp("ml")
    prepare_movielens_100k(out, path=ml100k_dir, opts=BuildOptions(seq_len=30))
    return load_dataset(out), ml100k_dir


def test_movielens_task_sizes_match_the_raw_counts(ml):
    ds, raw = ml
    r = pd.read_csv(raw / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"])
    users = pd.read_csv(raw / "u.user", sep="|", header=None, names=["user", "age", "gender", "occ", "zip"])
    low_users = r[~r.rating.isin([4, 5])].user.unique()
    assert ds.n_users == len(low_users) == 941
    assert [t.name for t in ds.tasks] == ["T1", "T2", "T3", "T4", "T5", "T6"]
    kept = set(str(u) for u in low_users)
    # T2: every (user, movie) rated 4 whose user has a T1 sequence
    assert len(ds.task("T2").user_index) == int(
        (r.rating == 4).sum() - r[(r.rating == 4) & ~r.user.astype(str).isin(kept)].shape[0]
    )
    assert len(ds.task("T3").user_index) == int(((r.rating == 5) & r.user.astype(str).isin(kept)).sum())
    assert ds.task("T4").n_labels == 2 and ds.task("T5").n_labels == 7 and ds.task("T6").n_labels == 21
    assert ds.task("T5").label_names == sorted(b[2] for b in ML_AGE_BUCKETS)
    assert ds.manifest["interactions"]["n_rows"] == int(r.user.astype(str).isin(kept).sum())
    assert len(users) == 943


def test_movielens_sequence_is_chronological_low_ratings(ml):
    ds, raw = ml
    r = pd.read_csv(raw / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"])
    items = pd.read_csv(
        raw / "u.item", sep="|", header=None, encoding="latin-1", usecols=[0, 1], names=["item", "title"]
    )
    title = dict(zip(items.item, items.title, strict=True))
    u = ds.user_ids.index("1")
    mine = r[(r.user == 1) & ~r.rating.isin([4, 5])].sort_values(["ts", "item"], kind="stable")
    expected = [title[i].lower() for i in mine.item][-30:]
    got = [ds.vocab.queries[i] for i in ds.sequences[u] if i != 0]
    assert got == expected


def test_kmrd_tasks(tmp_path, kmrd_dir):
    m = prepare_kmrd(tmp_path / "k", path=kmrd_dir, opts=BuildOptions(seq_len=30))
    ds = load_dataset(tmp_path / "k")
    rates = pd.read_csv(kmrd_dir / "rates.csv", dtype={"user": str, "movie": str})
    assert ds.n_users == rates.user.nunique()
    assert ds.task("T2").n_users == rates[rates.rate == 10].user.nunique()
    assert len(ds.task("T2").user_index) == len(rates[rates.rate == 10].drop_duplicates(["user", "movie"]))
    assert m["movies_without_title"] > 0  # KMRD has movies with an empty title: they get "movie <id>"
    assert any(q.startswith("movie ") for q in ds.vocab.queries)
    assert any("\uac00" <= ch <= "\ud7a3" for q in ds.vocab.queries[2:50] for ch in q)  # Korean titles
    # most KMRD users have 1-2 ratings: a natural cold-start population
    per_user = np.bincount(ds.interactions.user_index)
    assert (per_user < 3).mean() > 0.5
    assert ds.task("T3").kind == "classify" and ds.task("T4").kind == "classify"


def test_favourite_rule_breaks_ties_by_global_frequency():
    rated = pd.DataFrame(
        {"user": ["a", "a", "b", "b", "b", "c"], "movie": ["m1", "m2", "m1", "m3", "m4", "m5"]}
    )
    attr = pd.DataFrame(
        {"movie": ["m1", "m2", "m3", "m4", "m5"], "genre": ["드라마", "코미디", "코미디", "코미디", "SF"]}
    )
    fav = _favourite(rated, attr, "genre").set_index("user_id")["label"].to_dict()
    # a: 드라마 1 vs 코미디 1 -> tie, 코미디 is more frequent overall (3 vs 2)
    assert fav == {"a": "코미디", "b": "코미디", "c": "SF"}


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(DataError, match="u.data: file not found"):
        prepare_movielens_100k(tmp_path / "o", path=tmp_path, opts=BuildOptions())


def test_exclude_last_interaction_hides_the_held_out_item(tmp_path, ml100k_dir):
    prepare_movielens_100k(
        tmp_path / "x", path=ml100k_dir, opts=BuildOptions(seq_len=30, exclude_last_interaction=True)
    )
    ds = load_dataset(tmp_path / "x")
    r = pd.read_csv(ml100k_dir / "u.data", sep="\t", header=None, names=["user", "item", "rating", "ts"])
    r = r.sort_values(["user", "ts", "item"], kind="stable")
    last = r.groupby("user").tail(1).set_index("user")
    items = pd.read_csv(
        ml100k_dir / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        usecols=[0, 1],
        names=["item", "title"],
    )
    title = dict(zip(items.item, items.title.str.lower(), strict=True))
    t2 = ds.task("T2")
    checked = 0
    for user in (1, 2, 3, 10, 100):
        u = ds.user_ids.index(str(user))
        item, rating = int(last.loc[user, "item"]), int(last.loc[user, "rating"])
        seq = [ds.vocab.queries[i] for i in ds.sequences[u] if i != 0]
        if rating < 4:
            # the held-out rating is not the most recent query any more (it is gone from the history)
            history = r[(r.user == user) & ~r.rating.isin([4, 5])].iloc[:-1]
            assert seq == [title[i] for i in history.item][-30:]
            checked += 1
        elif rating == 4:
            labels = {t2.label_names[lab] for lab in t2.label[t2.user_index == u]}
            assert str(item) not in labels
            checked += 1
    assert checked >= 3
    assert ds.manifest["excluded_last_interaction_rows"] == 943
    assert ds.manifest["interactions"]["n_rows"] >= 99_000  # interactions keep every rating
