"""The synthetic Korean search log: determinism, schema and the statistics of its generative process.

Expected values come from the process parameters in ``querylearn.data.synthetic`` (see
docs/synthetic.md); tolerances are several standard errors at the sizes used here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from querylearn.data import synthetic as S
from querylearn.data import synthetic_vocab as V
from querylearn.data.normalize import normalize_query
from querylearn.errors import QuerylearnError

N = 3000


@pytest.fixture(scope="module")
def log() -> S.SyntheticLog:
    return S.generate_synthetic_log(N, seed=7)


@pytest.fixture(scope="module")
def noisy() -> S.SyntheticLog:
    return S.generate_synthetic_log(N, seed=7, noisy_task=True)


def _frames(g: S.SyntheticLog) -> list[pd.DataFrame]:
    return [g.queries, g.catalogue, g.interactions, g.users, *(g.labels[k] for k in sorted(g.labels))]


def _query_sub(queries: pd.Series) -> np.ndarray:
    """Sub-category index of each raw query (len(sub_path) = non-shopping; -1 when the text is ambiguous)."""
    tab = S._tables()
    sub_of_variant = tab.noun_sub[tab.intent_noun[tab.variant_intent]]
    f = pd.DataFrame({"q": tab.variant_text, "s": sub_of_variant})
    per_text = f.groupby("q")["s"].agg(["min", "max"])
    mapping = per_text["min"].where(per_text["min"] == per_text["max"], -1)
    return queries.map(mapping).to_numpy()


# ------------------------------------------------------------------------------------ determinism


def test_same_arguments_give_identical_frames():
    a = S.generate_synthetic_log(300, seed=11, noisy_task=True)
    b = S.generate_synthetic_log(300, seed=11, noisy_task=True)
    assert a.tasks == b.tasks
    assert sorted(a.labels) == sorted(b.labels)
    for x, y in zip(_frames(a), _frames(b), strict=True):
        pd.testing.assert_frame_equal(x, y)


def test_different_seed_differs():
    a = S.generate_synthetic_log(300, seed=11)
    b = S.generate_synthetic_log(300, seed=12)
    assert not a.queries.equals(b.queries)
    assert not a.labels["T3"].equals(b.labels["T3"])
    assert not a.users["interests"].equals(b.users["interests"])


def test_noisy_task_leaves_everything_else_unchanged(log, noisy):
    for x, y in zip(
        _frames(log),
        [
            noisy.queries,
            noisy.catalogue,
            noisy.interactions,
            noisy.users,
            *(noisy.labels[k] for k in sorted(noisy.labels) if k != "TN"),
        ],
        strict=True,
    ):
        pd.testing.assert_frame_equal(x, y)


def test_chunking_does_not_change_the_result(monkeypatch):
    a = S.generate_synthetic_log(500, seed=3)
    monkeypatch.setattr(S, "CHUNK_USERS", 500)
    b = S.generate_synthetic_log(500, seed=3)
    pd.testing.assert_frame_equal(a.users, b.users)  # users are drawn before chunking
    monkeypatch.setattr(S, "CHUNK_USERS", 128)
    c = S.generate_synthetic_log(500, seed=3)
    d = S.generate_synthetic_log(500, seed=3)
    pd.testing.assert_frame_equal(c.queries, d.queries)  # deterministic for a fixed chunk size too


# ----------------------------------------------------------------------------------------- schema


def test_schema_and_tasks(log, noisy):
    assert log.tasks == [
        ("T1", "next_query"),
        ("T2", "multi_target"),
        ("T3", "multi_target"),
        ("T4", "multi_target"),
        ("T5", "multi_target"),
        ("T6", "classify"),
        ("T7", "classify"),
    ]
    assert [t for t, _ in noisy.tasks] == ["T1", "T2", "T3", "TN", "T4", "T5", "T6", "T7"]
    assert dict(noisy.tasks)["TN"] == "classify"
    assert sorted(log.labels) == ["T2", "T3", "T4", "T5", "T6", "T7"]
    q = log.queries
    assert list(q.columns) == ["user_id", "timestamp", "query"]
    assert q["timestamp"].dtype == np.int64
    assert pd.api.types.is_string_dtype(q["user_id"]) and pd.api.types.is_string_dtype(q["query"])
    assert list(log.catalogue.columns)[:3] == ["item_id", "title", "category"]
    assert list(log.interactions.columns) == ["user_id", "item_id", "timestamp"]
    assert log.interactions["timestamp"].dtype == np.int64
    assert {"user_id", "gender", "age_group", "interests", "top_category"} <= set(log.users.columns)
    for frame in log.labels.values():
        assert list(frame.columns) == ["user_id", "label"]
        assert not frame.duplicated().any()


def test_every_user_and_item_is_known(log):
    users = set(log.queries["user_id"])
    assert len(users) == N == len(log.users)
    for name, frame in log.labels.items():
        assert set(frame["user_id"]) <= users, name
    assert set(log.interactions["user_id"]) <= users
    items = set(log.catalogue["item_id"])
    assert set(log.labels["T3"]["label"]) <= items and set(log.labels["T5"]["label"]) <= items
    assert set(log.interactions["item_id"]) <= items
    cats = set(log.catalogue["category"])
    assert set(log.labels["T2"]["label"]) <= cats and set(log.labels["T4"]["label"]) <= cats
    assert set(log.labels["T6"]["label"]) <= set(V.AGE_GROUPS)
    assert set(log.labels["T7"]["label"]) == {"F", "M"}


def test_sequences_are_chronological_and_sized(log):
    q = log.queries
    per_user = q.groupby("user_id", sort=False)
    assert per_user["timestamp"].apply(lambda s: bool((np.diff(s.to_numpy()) > 0).all())).all()
    sizes = per_user.size()
    assert sizes.min() >= 20 and sizes.max() <= 90
    assert abs(sizes.mean() - 55) < 2  # uniform on 20..90
    assert log.interactions["timestamp"].min() > q["timestamp"].max()  # interactions follow the log
    small = S.generate_synthetic_log(50, seed=0, queries_per_user=(3, 5))
    assert small.queries.groupby("user_id").size().between(3, 5).all()


def test_taxonomy_shape_and_catalogue():
    tops = V.TAXONOMY
    assert len(tops) >= 12
    assert all(4 <= len(t[4]) <= 8 for t in tops)
    names = [t[0] for t in tops]
    for top in ("패션의류", "화장품/미용", "디지털/가전", "출산/육아", "식품", "도서", "자동차용품"):
        assert top in names
    cat = S.generate_synthetic_log(100, seed=0).catalogue
    assert len(cat) == 2000 and cat["item_id"].is_unique
    assert cat["title"].str.contains("[가-힣]").mean() > 0.99  # a few are all-Latin ("LG SSD 256GB")
    assert cat["category"].str.contains(S.CATEGORY_SEP, regex=False).all()


def test_bad_arguments_raise_one_clear_error():
    with pytest.raises(QuerylearnError, match="n_users"):
        S.generate_synthetic_log(0)
    with pytest.raises(QuerylearnError, match="queries_per_user"):
        S.generate_synthetic_log(10, queries_per_user=(5, 2))


# -------------------------------------------------------------------------------------- statistics


def test_interests_depend_on_gender_and_age(log):
    u = log.users
    female = u["gender"] == "F"
    beauty = u["interests"].str.contains("화장품/미용>", regex=False)
    digital = u["interests"].str.contains("디지털/가전>", regex=False)
    assert beauty[female].mean() > beauty[~female].mean() + 0.2
    assert digital[~female].mean() > digital[female].mean() + 0.2
    baby = u["interests"].str.contains("출산/육아>", regex=False).groupby(u["age_group"]).mean()
    assert baby.idxmax() in ("30대 초반", "30대 후반")
    assert baby["10대"] < 0.05
    assert abs(female.mean() - V.FEMALE_SHARE) < 0.04


def test_profile_labels_follow_latent_profile_with_noise(log):
    u = log.users.set_index("user_id")
    t7 = log.labels["T7"].set_index("user_id")["label"]
    agree = (t7 == u.loc[t7.index, "gender"]).mean()
    assert abs(agree - (1 - S.P_GENDER_NOISE)) < 0.015
    t6 = log.labels["T6"].set_index("user_id")["label"]
    agree = (t6 == u.loc[t6.index, "age_group"]).mean()
    # a moved label stays put only at the edges (youngest moved down / oldest moved up)
    assert 1 - S.P_AGE_NOISE - 0.02 < agree < 1 - S.P_AGE_NOISE + 0.035


def test_queries_carry_the_profile(log):
    q = log.queries.merge(log.users[["user_id", "gender"]], on="user_id")
    female_words = q["query"].str.contains("원피스|블라우스|쿠션|틴트|여성", regex=True)
    male_words = q["query"].str.contains("남성|남자|맨투맨|블랙박스|골프채", regex=True)
    assert (q.loc[female_words, "gender"] == "F").mean() > 0.75
    assert (q.loc[male_words, "gender"] == "M").mean() > 0.7


def test_non_shopping_share(log):
    sub = _query_sub(log.queries["query"])
    share = (sub == len(S._tables().sub_path)).mean()
    expected = NON_SHOPPING_MEAN = S.NON_SHOPPING_BETA[0] / sum(S.NON_SHOPPING_BETA)
    assert 0.15 <= share <= 0.25
    assert abs(share - expected) < 0.02, NON_SHOPPING_MEAN


def test_consecutive_queries_stay_in_a_sub_category(log):
    q = log.queries
    sub = _query_sub(q["query"])
    same_user = q["user_id"].to_numpy()[1:] == q["user_id"].to_numpy()[:-1]
    known = same_user & (sub[1:] >= 0) & (sub[:-1] >= 0)
    stay = (sub[1:] == sub[:-1])[known].mean()
    # every non-switch move keeps the sub-category
    assert stay > S.P_REPEAT + S.P_REFINE + S.P_SAME_SUB
    rng = np.random.default_rng(0)
    shuffled = q.groupby("user_id", sort=False)["query"].transform(lambda s: rng.permutation(s.to_numpy()))
    sub_s = _query_sub(shuffled)
    known_s = same_user & (sub_s[1:] >= 0) & (sub_s[:-1] >= 0)
    assert stay > (sub_s[1:] == sub_s[:-1])[known_s].mean() + 0.2


def test_realistic_surface_forms(log):
    q = log.queries["query"]
    text = set(q)
    assert {"캠핑의자", "캠핑 의자"} <= text  # spacing variants
    assert q.str.contains("남친룩").any() and q.str.contains("꾸안꾸").any() and q.str.contains("갤탭").any()
    assert q.str.contains(
        "[가-힣]+ ?[A-Za-z]{3,}|[A-Za-z]{3,} ?[가-힣]+"
    ).any()  # Latin brands next to Hangul
    assert q.str.contains("[Ａ-Ｚａ-ｚ]").any()  # full-width Latin
    assert q.str.contains("[A-Z]{3,}").any() and q.str.contains("[a-z]{3,}").any()
    tab = S._tables()
    typos = set(tab.variant_text[np.isin(tab.variant_kind, [3, 4])])
    assert len(text & typos) > 20
    repeat = (q.to_numpy()[1:] == q.to_numpy()[:-1]) & (
        log.queries["user_id"].to_numpy()[1:] == log.queries["user_id"].to_numpy()[:-1]
    )
    assert 0.04 < repeat.mean() < 0.15
    # variants collapse under the one normalisation rule (case / width / whitespace)
    assert q.map(normalize_query).nunique() < q.nunique()
    assert q.str.contains("날씨").any() and q.str.contains("뉴스").any()


def test_wish_list_and_purchases(log):
    t2, t3, t4, t5 = (log.labels[k] for k in ("T2", "T3", "T4", "T5"))
    assert abs(t3["user_id"].nunique() / N - S.P_HAS_WISH) < 0.03  # not every user wish-lists
    assert set(t2["user_id"]) == set(t3["user_id"]) and set(t4["user_id"]) == set(t5["user_id"])
    for frame in (t2, t4):
        assert frame.groupby("user_id").size().between(1, S.MAX_CATEGORY_LABELS).all()
    both = set(t2["user_id"]) & set(t4["user_id"])
    shared_cat = t2.merge(t4, on=["user_id", "label"])["user_id"].nunique() / len(both)
    assert shared_cat > 0.6  # purchases resemble wish-lists
    both = set(t3["user_id"]) & set(t5["user_id"])
    shared_item = t3.merge(t5, on=["user_id", "label"])["user_id"].nunique() / len(both)
    assert shared_item > S.P_BUY_WISHED * 0.8
    # wish-listed categories follow the user's interests, but not always (label noise)
    top = log.users.set_index("user_id")["interests"].str.split("|").str[0]
    hit = (t2["label"] == t2["user_id"].map(top)).groupby(t2["user_id"]).any().mean()
    assert 0.5 < hit < 0.95
    # wish-listed products are predictable from the user's own queries: the product's noun was searched
    noun = t3["label"].map(log.catalogue.set_index("item_id")["noun"])
    text = (
        log.queries.assign(q=log.queries["query"].str.replace(" ", "")).groupby("user_id")["q"].agg("\t".join)
    )
    own = np.mean([n in text[u] for u, n in zip(t3["user_id"], noun, strict=True)])
    other_users = np.roll(text.index.to_numpy(), 1)  # a different user's queries
    other = dict(zip(text.index, text[other_users].to_numpy(), strict=True))
    other_hit = np.mean([n in other[u] for u, n in zip(t3["user_id"], noun, strict=True)])
    assert own > other_hit + 0.3


def test_interactions_cold_share(log):
    n_int = log.interactions.groupby("user_id").size().reindex(log.users["user_id"], fill_value=0)
    cold = (n_int < 2).mean()
    assert 0.2 <= cold <= 0.4
    assert (n_int == 0).mean() > 0.05
    assert not log.interactions.duplicated(["user_id", "item_id"]).any()
    ts = log.interactions.groupby("user_id", sort=False)["timestamp"].apply(
        lambda s: bool(s.is_monotonic_increasing)
    )
    assert ts.all()


def test_noisy_task_is_uninformative(noisy):
    tn = noisy.labels["TN"]
    assert len(tn) == N // 2 and tn["user_id"].is_unique
    counts = tn["label"].value_counts()
    assert len(counts) == S.NOISY_CLASSES
    assert counts.max() - counts.min() <= 1  # each class equally often: uniform marginal
    g = tn.merge(noisy.users[["user_id", "gender"]], on="user_id")
    female = g.groupby("label")["gender"].apply(lambda s: (s == "F").mean())
    # independent of gender: per-class female shares scatter around the overall share
    assert abs(female.mean() - (g["gender"] == "F").mean()) < 0.03
