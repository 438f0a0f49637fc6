"""The embedded default data: a generator of a realistic synthetic Korean search log.

Real Korean query logs are private, so ``querylearn prepare synthetic`` builds its default dataset
from this generator. The generative process is written down precisely in ``docs/synthetic.md``;
in short:

1. **Users.** Latent gender (F 53%) and one of 7 age groups (``AGE_GROUPS``). Each user draws
   ``N_SLOTS`` = 4 interest slots (sub-categories of a 12 x 4-6 Korean shopping taxonomy) from a
   prior that depends on gender and age, with Dirichlet(0.6) weights, one favourite noun per slot,
   and a non-shopping rate ~ Beta(2.4, 9.6) (mean 0.2).
2. **Queries.** A Markov chain over (slot, noun, intent, surface form): each step either repeats a
   recent query, refines the current noun (same noun, new intent: brand / modifier), moves to
   another noun of the same sub-category, or switches slot (non-shopping with the user's rate,
   else a slot drawn by its weight). Because every non-switch move keeps the slot, consecutive
   queries tend to stay in one sub-category and the non-shopping share equals the user's rate.
   Surface forms add spacing variants, abbreviations/slang, misspellings, jamo-level typos and
   upper-case / full-width Latin. Timestamps: seconds within a session, hours between sessions.
3. **Catalogue.** ``clip(n_users // 4, 2000, 50000)`` products, each brand + noun (+ modifier) +
   spec, at least one per noun, Zipf popularity within its noun.
4. **Labels.** Wish-list (T2 categories from T3 products), purchases (T4/T5; often a wish-listed
   product or from a wish-listed category), age group (T6, 10% moved to a neighbouring bucket),
   gender (T7, 4% flipped); optional TN: half of the users, one of 50 classes each, at random.
5. **Interactions** (cold-start stage): clicks/purchases after the query log ends; 12% of users have
   none and 16% exactly one draw.

Determinism: every random draw comes from ``numpy.random.Generator`` streams derived from
``SeedSequence(seed)`` with fixed spawn keys; tables are built from tuples in a fixed order (no
``hash()``, no set iteration). Queries are generated in chunks of ``CHUNK_USERS`` users so memory
stays proportional to one chunk plus the output arrays.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from querylearn.data import synthetic_vocab as V
from querylearn.errors import QuerylearnError

TASKS: tuple[tuple[str, str], ...] = (
    ("T1", "next_query"),
    ("T2", "multi_target"),
    ("T3", "multi_target"),
    ("T4", "multi_target"),
    ("T5", "multi_target"),
    ("T6", "classify"),
    ("T7", "classify"),
)
NOISY_TASK = ("TN", "classify")
NOISY_CLASSES = 50
CATEGORY_SEP = ">"  # category label = "top>sub", e.g. "스포츠/레저>캠핑" (top names contain "/")

N_SLOTS = 4
CHUNK_USERS = 65_536
T0 = 1_704_034_800  # 2024-01-01 00:00 KST, epoch seconds
START_SPREAD_S = 60 * 86_400  # first query uniformly within 60 days of T0
INTERACTION_WINDOW_S = 30 * 86_400

# Process parameters (documented in docs/synthetic.md; changing one changes every dataset).
INTEREST_ALPHA = 0.6
NON_SHOPPING_BETA = (2.4, 9.6)
P_REPEAT, P_REFINE, P_SAME_SUB = 0.07, 0.28, 0.27  # else switch slot
P_FAV_NOUN = 0.5
P_GENDER_MATCH = 0.85
P_HAS_WISH = 0.62
P_PURCHASE_IF_WISH, P_PURCHASE_NO_WISH = 0.62, 0.35
P_BUY_WISHED, P_BUY_WISHED_SUB = 0.45, 0.25
P_LABEL_OFF_INTEREST = 0.10
P_AGE_NOISE, P_GENDER_NOISE = 0.10, 0.04
P_ZERO_INTERACTIONS, P_ONE_INTERACTION = 0.12, 0.16
MAX_CATEGORY_LABELS = 3
ITEM_ZIPF = 1.2  # product popularity within a noun: 1 / rank^1.2
QUERIES_PER_USER = (20, 90)  # inclusive range of the uniform per-user query count


@dataclass
class SyntheticLog:
    """Raw frames of one synthetic log (the dataset builder turns them into a dataset directory).

    queries: user_id (str), timestamp (int64 epoch s), query (str, raw): grouped by user, chronological.
    labels: task name -> DataFrame(user_id, label) for every task except the next_query task T1;
        multi-target tasks have several rows per user.
    tasks: ordered (name, kind).
    catalogue: item_id, title, category ("top>sub"), noun.
    interactions: user_id, item_id, timestamp (after the query log), chronological per user.
    users: ground truth: user_id, gender, age_group, interests ("|"-joined categories, heaviest
        first), interest_weights, top_category, non_shopping_rate, n_queries.
    """

    queries: pd.DataFrame
    labels: dict[str, pd.DataFrame]
    tasks: list[tuple[str, str]]
    catalogue: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame


# ----------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class _Tables:
    """The fixed 'language' of the generator (independent of the seed)."""

    sub_path: list[str]  # [S] "top>sub"; index S is the non-shopping pseudo-category
    sub_top: np.ndarray  # [S] top index
    prior: np.ndarray  # [2 * 7, S] sub-category prior per (gender, age) group
    noun_sub: np.ndarray  # [N] sub index (S for non-shopping topics)
    noun_text: list[str]  # [N] noun, joined form
    noun_pop: np.ndarray  # [N] popularity within its sub-category (sums to 1 per sub)
    noun_cdf: np.ndarray  # [N] key sub: sub + cumulative popularity within sub
    prior_cdf: np.ndarray  # [14 * S] key group: group + cumulative prior
    sub_noun_start: np.ndarray  # [S + 1]
    sub_noun_count: np.ndarray  # [S + 1]
    intent_noun: np.ndarray  # [I]
    intent_gender: np.ndarray  # [I] 0 neutral, 1 female form, 2 male form
    intent_twin: np.ndarray  # [I] the opposite-gender intent (itself when neutral)
    intent_cdf: np.ndarray  # [I] key noun
    variant_intent: np.ndarray  # [Q]
    variant_cdf: np.ndarray  # [Q] key intent
    variant_text: np.ndarray  # [Q] object array of the surface strings
    variant_kind: np.ndarray  # [Q] int8 index into VARIANT_KINDS
    brands: list[list[tuple[str, ...]]]  # per sub: brand spellings
    sub_modifiers: list[list[str]]  # per sub: modifiers (prefix form without "+")


VARIANT_KINDS = ("canonical", "spacing", "abbreviation", "misspelling", "jamo_typo", "latin_case")


def _words(text: str) -> list[str]:
    return [w for w in text.split(" ") if w]


def _key_cdf(keys: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Cumulative weights within each run of equal ``keys`` (sorted), offset by the key: [n] float64.

    ``searchsorted(cdf, key + u, side="right")`` with u ~ U[0, 1) samples an index of that key.
    """
    out = np.empty(len(keys), dtype=np.float64)
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        c = np.cumsum(weights[a:b], dtype=np.float64)
        c /= c[-1]
        c[-1] = 1.0
        out[a:b] = keys[a] + np.maximum(c, 1e-9)
    return out


def _sample_keyed(cdf: np.ndarray, keys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per key from a ``_key_cdf`` table: [n] int64."""
    u = rng.random(len(keys))
    idx = np.searchsorted(cdf, keys.astype(np.float64) + u, side="right")
    return np.minimum(idx, len(cdf) - 1)


def _drop_batchim(word: str, pick: int) -> str | None:
    """Jamo-level typo: drop the final consonant of one Hangul syllable (캠핑 -> 캐핑)."""
    spots = [i for i, ch in enumerate(word) if 0xAC00 <= ord(ch) <= 0xD7A3 and (ord(ch) - 0xAC00) % 28]
    if not spots:
        return None
    i = spots[pick % len(spots)]
    code = ord(word[i]) - 0xAC00
    return word[:i] + chr(0xAC00 + code - code % 28) + word[i + 1 :]


def _swap_syllables(word: str, pick: int) -> str | None:
    """Typo: two adjacent Hangul syllables swapped (운동화 -> 운화동)."""
    spots = [
        i
        for i in range(len(word) - 1)
        if word[i] != word[i + 1] and all(0xAC00 <= ord(c) <= 0xD7A3 for c in word[i : i + 2])
    ]
    if not spots:
        return None
    i = spots[pick % len(spots)]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _fullwidth(text: str) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if "!" <= c <= "~" and c.isascii() and c.isalnum() else c for c in text
    )


def _surface_forms(
    canonical: str, compound_spaced: str, rng: np.random.Generator
) -> list[tuple[str, float, int]]:
    """Surface variants of one intent: (text, weight, kind index). Duplicates are merged later."""
    forms: list[tuple[str, float, int]] = [(canonical, 1.0, 0)]
    if compound_spaced != canonical:
        forms.append((compound_spaced, 0.35, 1))
    if " " in canonical:
        forms.append((canonical.replace(" ", ""), 0.12, 1))
    for full, short in V.ABBREVIATIONS:
        if full in canonical:
            forms.append((canonical.replace(full, short, 1), 0.35, 2))
            break
    for right, wrong in V.MISSPELLINGS:
        if right in canonical:
            forms.append((canonical.replace(right, wrong, 1), 0.06, 3))
            break
    words = canonical.split(" ")
    pick = int(rng.integers(1 << 30))
    head = max(words, key=len)
    typo = _drop_batchim(head, pick) if pick % 2 else _swap_syllables(head, pick)
    if typo and typo != head:
        forms.append((canonical.replace(head, typo, 1), 0.03, 4))
    if any("A" <= c <= "Z" or "a" <= c <= "z" for c in canonical):
        forms.append((canonical.lower(), 0.45, 5))
        forms.append((canonical.upper(), 0.12, 5))
        forms.append((_fullwidth(canonical), 0.05, 5))
    return forms


def _parse_brand(token: str) -> tuple[str, ...]:
    return tuple(part.replace("_", " ") for part in token.split(":"))


def _parse_mods(text: str) -> list[tuple[str, bool]]:
    """Modifier tokens -> (word, is_prefix)."""
    return [(w[:-1], True) if w.endswith("+") else (w, False) for w in _words(text)]


@functools.lru_cache(maxsize=1)
def _tables() -> _Tables:
    rng = np.random.default_rng(20240101)  # fixed: the vocabulary does not depend on the user seed
    sub_path: list[str] = []
    sub_top: list[int] = []
    group_w: list[list[float]] = [[] for _ in range(2 * len(V.AGE_GROUPS))]
    sub_rows = []
    for t, (top, base, gmul, amul, subs) in enumerate(V.TAXONOMY):
        for sub in subs:
            name, _nouns, _brands, _mods, sub_g, _gendered = sub
            sub_path.append(f"{top}{CATEGORY_SEP}{name}")
            sub_top.append(t)
            sub_rows.append(sub)
            for g in range(2):
                for a in range(len(V.AGE_GROUPS)):
                    group_w[g * len(V.AGE_GROUPS) + a].append(base * gmul[g] * amul[a] * sub_g[g] / len(subs))
    n_subs = len(sub_path)
    prior = np.asarray(group_w, dtype=np.float64)
    prior /= prior.sum(axis=1, keepdims=True)

    common = _parse_mods(V.COMMON_MODIFIERS)
    noun_sub: list[int] = []
    noun_text: list[str] = []
    noun_w: list[float] = []
    intents: list[tuple[int, str, str, float, int]] = []  # noun, canonical, compound-spaced, weight, gender
    brands_per_sub: list[list[tuple[str, ...]]] = []
    mods_per_sub: list[list[str]] = []
    for s, (_name, nouns_s, brands_s, mods_s, _g, gendered) in enumerate(sub_rows):
        nouns = _words(nouns_s)
        brands = [_parse_brand(b) for b in _words(brands_s)]
        own = _parse_mods(mods_s)
        brands_per_sub.append(brands)
        mods_per_sub.append([m for m, _ in own])
        mods: list[tuple[str, bool, float]] = [(m, p, 1.2) for m, p in own]
        seen = {m for m, _ in own}
        mods += [(m, p, 0.6) for m, p in common if m not in seen]
        for r, raw in enumerate(nouns):
            n = len(noun_text)
            noun_sub.append(s)
            noun_text.append(raw.replace("_", ""))
            noun_w.append(1.0 / (r + 1) ** 0.7)
            joined, spaced = raw.replace("_", ""), raw.replace("_", " ")

            def add(
                pre: str, post: str, w: float, gender: int = 0, n=n, joined=joined, spaced=spaced
            ) -> None:
                a = f"{pre} " if pre else ""
                z = f" {post}" if post else ""
                intents.append((n, f"{a}{joined}{z}", f"{a}{spaced}{z}", w, gender))

            add("", "", 8.0)
            for b, forms in enumerate(brands):
                pop = 1.0 / (b + 1)
                shares = (0.7, 0.3) if len(forms) == 2 else (1.0,)
                for form, share in zip(forms, shares, strict=True):
                    add(form, "", 1.6 * pop * share)
                    add(form, "추천" if b % 2 else "후기", 0.25 * pop * share)
                    if b % len(nouns) == r:  # brand-only queries hang off one noun of the sub
                        intents.append((n, form, form, 2.0 * pop * share, 0))
            for m, is_prefix, w in mods:
                if is_prefix:
                    add(m, "", w)
                else:
                    add("", m, w)
            if gendered:
                for fem, male in V.GENDER_MODIFIERS:
                    add(fem[:-1], "", 1.0, 1)
                    add(male[:-1], "", 1.0, 2)
    # non-shopping topics: pseudo-category index n_subs
    for _topic, seeds_s, mods_s in V.NON_SHOPPING:
        mods = _parse_mods(mods_s)
        for r, raw in enumerate(_words(seeds_s)):
            n = len(noun_text)
            noun_sub.append(n_subs)
            noun_text.append(raw.replace("_", " "))
            noun_w.append(1.0 / (r + 1) ** 0.5)
            q = raw.replace("_", " ")
            intents.append((n, q, q, 4.0, 0))
            for m, is_prefix in mods:
                if " " in q or m in q:  # "오늘 뉴스" takes no second modifier
                    continue
                text = f"{m} {q}" if is_prefix else f"{q} {m}"
                intents.append((n, text, text, 0.6, 0))

    noun_sub_a = np.asarray(noun_sub, dtype=np.int64)
    counts = np.bincount(noun_sub_a, minlength=n_subs + 1)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    intent_noun = np.asarray([i[0] for i in intents], dtype=np.int64)
    intent_gender = np.asarray([i[4] for i in intents], dtype=np.int8)
    # twin: the same (noun, modifier pair index) with the other gender form
    twin = np.arange(len(intents), dtype=np.int64)
    for k in np.flatnonzero(intent_gender == 1):
        twin[k], twin[k + 1] = k + 1, k  # added as consecutive (female, male) pairs
    v_text: list[str] = []
    v_w: list[float] = []
    v_intent: list[int] = []
    v_kind: list[int] = []
    for k, (_n, canonical, spaced, _w, _g) in enumerate(intents):
        merged: dict[str, list[float]] = {}
        for text, w, kind in _surface_forms(canonical, spaced, rng):
            if text in merged:
                merged[text][0] += w
            else:
                merged[text] = [w, kind]
        for text, (w, kind) in merged.items():  # dict: insertion order, deterministic
            v_text.append(text)
            v_w.append(w)
            v_intent.append(k)
            v_kind.append(int(kind))
    variant_intent = np.asarray(v_intent, dtype=np.int64)
    return _Tables(
        sub_path=sub_path,
        sub_top=np.asarray(sub_top, dtype=np.int64),
        prior=prior,
        noun_sub=noun_sub_a,
        noun_text=noun_text,
        noun_pop=np.asarray(noun_w) / np.bincount(noun_sub_a, weights=noun_w)[noun_sub_a],
        noun_cdf=_key_cdf(noun_sub_a, np.asarray(noun_w)),
        prior_cdf=_key_cdf(np.repeat(np.arange(prior.shape[0]), n_subs), prior.ravel()),
        sub_noun_start=starts.astype(np.int64),
        sub_noun_count=counts.astype(np.int64),
        intent_noun=intent_noun,
        intent_gender=intent_gender,
        intent_twin=twin,
        intent_cdf=_key_cdf(intent_noun, np.asarray([i[3] for i in intents])),
        variant_intent=variant_intent,
        variant_cdf=_key_cdf(variant_intent, np.asarray(v_w)),
        variant_text=np.asarray(v_text, dtype=object),
        variant_kind=np.asarray(v_kind, dtype=np.int8),
        brands=brands_per_sub,
        sub_modifiers=mods_per_sub,
    )


# ------------------------------------------------------------------------------------------ users


@dataclass
class _Users:
    gender: np.ndarray  # [n] 0 F, 1 M
    age: np.ndarray  # [n] index into AGE_GROUPS
    slot_sub: np.ndarray  # [n, K] sub index, heaviest slot first
    slot_w: np.ndarray  # [n, K] float64, rows sum to 1, descending
    slot_noun: np.ndarray  # [n, K] favourite noun per slot
    p_ns: np.ndarray  # [n] non-shopping rate
    n_queries: np.ndarray  # [n]


def _draw_users(n: int, tab: _Tables, rng: np.random.Generator, q_range: tuple[int, int]) -> _Users:
    gender = (rng.random(n) >= V.FEMALE_SHARE).astype(np.int64)
    age = np.searchsorted(np.cumsum(V.AGE_SHARE), rng.random(n) * sum(V.AGE_SHARE), side="right")
    age = np.minimum(age, len(V.AGE_GROUPS) - 1)
    group = gender * len(V.AGE_GROUPS) + age
    n_subs = len(tab.sub_path)
    prior_cdf = tab.prior_cdf
    slot_sub = np.empty((n, N_SLOTS), dtype=np.int64)
    for k in range(N_SLOTS):
        slot_sub[:, k] = _sample_keyed(prior_cdf, group, rng) - group * n_subs
        for _ in range(8):  # redraw duplicates of earlier slots (a few rounds; leftovers are merged)
            dup = (slot_sub[:, :k] == slot_sub[:, k : k + 1]).any(axis=1)
            if not dup.any():
                break
            slot_sub[dup, k] = _sample_keyed(prior_cdf, group[dup], rng) - group[dup] * n_subs
    w = rng.gamma(INTEREST_ALPHA, size=(n, N_SLOTS)) + 1e-6
    w /= w.sum(axis=1, keepdims=True)
    order = np.argsort(-w, axis=1, kind="stable")
    slot_sub = np.take_along_axis(slot_sub, order, axis=1)
    w = np.take_along_axis(w, order, axis=1)
    slot_noun = _sample_keyed(tab.noun_cdf, slot_sub.ravel(), rng).reshape(n, N_SLOTS)
    p_ns = rng.beta(*NON_SHOPPING_BETA, size=n)
    lo, hi = q_range
    n_queries = rng.integers(lo, hi + 1, size=n)
    return _Users(gender, age, slot_sub, w, slot_noun, p_ns, n_queries)


# ---------------------------------------------------------------------------------------- queries


def _pick_intent(nouns: np.ndarray, gender: np.ndarray, tab: _Tables, rng: np.random.Generator) -> np.ndarray:
    intent = _sample_keyed(tab.intent_cdf, nouns, rng)
    g = tab.intent_gender[intent]
    wrong = (g > 0) & (g != gender + 1) & (rng.random(len(intent)) < P_GENDER_MATCH)
    intent[wrong] = tab.intent_twin[intent[wrong]]
    return intent


def _query_chunk(
    users: _Users, lo: int, hi: int, tab: _Tables, rng: np.random.Generator, trace: dict | None = None
):
    """Queries of users [lo, hi): (user index [m], variant id [m], timestamp [m]), user-major, chronological.

    ``trace`` (a dict, filled in place; draws unchanged): "slot" and "noun" [c], the chain's state
    before each user's last query (what the final step conditions on; ``bench/t1_oracle.py``).

    One Markov step per column t (vectorised over the chunk's users); modes per step:
    0 repeat a recent query, 1 refine (same noun, new intent), 2 same sub-category, new noun,
    3 switch slot (non-shopping with the user's rate p_ns, else slot k with weight w_k).
    """
    c = hi - lo
    n_q = users.n_queries[lo:hi]
    length = int(n_q.max())
    gender = users.gender[lo:hi]
    slot_sub = np.concatenate([users.slot_sub[lo:hi], np.full((c, 1), len(tab.sub_path))], axis=1)  # [c, K+1]
    slot_noun = users.slot_noun[lo:hi]
    cum_w = np.cumsum(users.slot_w[lo:hi], axis=1)  # [c, K]
    p_ns = users.p_ns[lo:hi]
    hist_var = np.empty((c, length), dtype=np.int32)  # [c, L] variant ids
    hist_slot = np.empty((c, length), dtype=np.int8)  # [c, L] slot (N_SLOTS = non-shopping)
    gaps = np.empty((c, length), dtype=np.int64)  # [c, L] seconds since the previous query
    rows = np.arange(c)
    slot = np.zeros(c, dtype=np.int64)
    noun = np.zeros(c, dtype=np.int64)
    if trace is not None:
        trace["slot"] = np.zeros(c, dtype=np.int64)
        trace["noun"] = np.zeros(c, dtype=np.int64)
    for t in range(length):
        if trace is not None:
            final = n_q - 1 == t
            trace["slot"][final], trace["noun"][final] = slot[final], noun[final]
        r = rng.random(c)
        if t == 0:
            mode = np.full(c, 3)
        else:
            mode = np.searchsorted(np.cumsum([P_REPEAT, P_REFINE, P_SAME_SUB]), r, side="right")  # 0..3
        var = np.empty(c, dtype=np.int64)
        # 0: repeat one of the last 4 queries (same surface form)
        rep = np.flatnonzero(mode == 0)
        if len(rep):
            lag = 1 + (rng.random(len(rep)) * min(t, 4)).astype(np.int64)
            var[rep] = hist_var[rep, t - lag]
            slot[rep] = hist_slot[rep, t - lag]
            noun[rep] = tab.intent_noun[tab.variant_intent[var[rep]]]
        # 3: switch slot: non-shopping with the user's rate, else by slot weight
        sw = np.flatnonzero(mode == 3)
        if len(sw):
            ns = rng.random(len(sw)) < p_ns[sw]
            k = (rng.random(len(sw))[:, None] > cum_w[sw]).sum(axis=1)
            slot[sw] = np.where(ns, N_SLOTS, np.minimum(k, N_SLOTS - 1))
        # 2 and 3: a noun of the slot's sub-category (the slot's favourite one half of the time)
        nn = np.flatnonzero(mode >= 2)
        if len(nn):
            sub = slot_sub[nn, slot[nn]]
            new = _sample_keyed(tab.noun_cdf, sub, rng)
            fav = (slot[nn] < N_SLOTS) & (rng.random(len(nn)) < P_FAV_NOUN)
            new[fav] = slot_noun[nn[fav], slot[nn[fav]]]
            noun[nn] = new
        # 1, 2, 3: an intent of the noun, then its surface form
        fresh = np.flatnonzero(mode >= 1)
        if len(fresh):
            intent = _pick_intent(noun[fresh], gender[fresh], tab, rng)
            var[fresh] = _sample_keyed(tab.variant_cdf, intent, rng)
        hist_var[:, t] = var
        hist_slot[:, t] = slot
        # seconds between queries: a new session after a switch (half of the time) or at random (3%)
        brk = ((mode == 3) & (rng.random(c) < 0.5)) | (rng.random(c) < 0.03)
        within = 3 + rng.exponential(40.0, c)
        between = 600 + rng.exponential(10 * 3600.0, c)
        gaps[:, t] = np.where(brk, between, within).astype(np.int64)
    gaps[:, 0] = 0
    start = T0 + rng.integers(0, START_SPREAD_S, size=c)
    ts = start[:, None] + np.cumsum(gaps, axis=1)  # [c, L]
    keep = np.arange(length)[None, :] < n_q[:, None]  # row-major: user-major, time ascending
    user = np.broadcast_to((rows + lo)[:, None], (c, length))[keep]
    return user.astype(np.int64), hist_var[keep], ts[keep]


# ------------------------------------------------------------------------------ catalogue, labels


def _catalogue(n_items: int, tab: _Tables, rng: np.random.Generator):
    """Products: (frame, item noun [P], item cdf keyed by noun [P])."""
    shop = np.flatnonzero(tab.noun_sub < len(tab.sub_path))
    sub_pop = tab.prior.mean(axis=0)  # [S]
    w = sub_pop[tab.noun_sub[shop]] * tab.noun_pop[shop]
    extra = rng.multinomial(max(n_items - len(shop), 0), w / w.sum())
    per_noun = 1 + extra
    item_noun = np.repeat(shop, per_noun)
    rank = np.arange(len(item_noun)) - np.repeat(np.cumsum(per_noun) - per_noun, per_noun)
    pop = 1.0 / (rank + 1.0) ** ITEM_ZIPF  # Zipf within the noun
    cdf = _key_cdf(item_noun, pop)
    specs = {top: _words(s) for top, s in V.TITLE_SPECS}
    tags = _words(V.TITLE_TAGS)
    tops = [t[0] for t in V.TAXONOMY]
    n = len(item_noun)
    u = rng.random((n, 6))
    width = max(6, len(str(n)))
    ids, titles, cats = [], [], []
    for i in range(n):
        s = int(tab.noun_sub[item_noun[i]])
        brands = tab.brands[s]
        b = brands[int(u[i, 0] ** 1.5 * len(brands))]
        brand = b[int(u[i, 1] * len(b))]
        parts = [brand]
        mods = tab.sub_modifiers[s]
        if mods and u[i, 2] < 0.5:
            parts.append(mods[int(u[i, 3] * len(mods))])
        parts.append(tab.noun_text[item_noun[i]])
        sp = specs[tops[tab.sub_top[s]]]
        parts.append(sp[int(u[i, 4] * len(sp))])
        title = " ".join(parts)
        if u[i, 5] < 0.25:
            title = f"[{tags[int(u[i, 5] * 4 * len(tags))]}] {title}"
        ids.append(f"P{i + 1:0{width}d}")
        titles.append(title)
        cats.append(tab.sub_path[s])
    frame = pd.DataFrame(
        {"item_id": ids, "title": titles, "category": cats, "noun": [tab.noun_text[k] for k in item_noun]}
    )
    return frame, item_noun, cdf


def _interest_items(users: _Users, who: np.ndarray, tab: _Tables, item_cdf, rng, p_fav: float) -> np.ndarray:
    """One product per entry of ``who`` (user indices) drawn from the user's interests: [m] item index.

    A share P_LABEL_OFF_INTEREST comes from the user's demographic prior instead (label noise).
    """
    m = len(who)
    k = (rng.random(m)[:, None] > np.cumsum(users.slot_w[who], axis=1)).sum(axis=1)
    k = np.minimum(k, N_SLOTS - 1)
    sub = users.slot_sub[who, k]
    off = rng.random(m) < P_LABEL_OFF_INTEREST
    if off.any():
        n_subs = len(tab.sub_path)
        group = users.gender[who[off]] * len(V.AGE_GROUPS) + users.age[who[off]]
        sub[off] = _sample_keyed(tab.prior_cdf, group, rng) - group * n_subs
    noun = _sample_keyed(tab.noun_cdf, sub, rng)
    fav = ~off & (rng.random(m) < p_fav)
    noun[fav] = users.slot_noun[who[fav], k[fav]]
    return _sample_keyed(item_cdf, noun, rng)


def _geometric_counts(rng, n: int, p: float, cap: int) -> np.ndarray:
    return np.minimum(rng.geometric(p, size=n), cap)


def _dedupe_pairs(user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop repeated (user, item) pairs, keeping first occurrences in order."""
    key = user.astype(np.int64) * (int(item.max()) + 1 if len(item) else 1) + item
    _, first = np.unique(key, return_index=True)
    first.sort()
    return user[first], item[first]


def _category_labels(user: np.ndarray, item_sub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per user the <= 3 most frequent sub-categories (ties: first seen): (user [m], sub [m])."""
    f = pd.DataFrame({"u": user, "s": item_sub, "o": np.arange(len(user))})
    g = f.groupby(["u", "s"], sort=False).agg(c=("o", "size"), first=("o", "min")).reset_index()
    g = g.sort_values(["u", "c", "first"], ascending=[True, False, True], kind="stable")
    g = g.groupby("u", sort=False).head(MAX_CATEGORY_LABELS)
    return g["u"].to_numpy(), g["s"].to_numpy()


def _str_column(pool: np.ndarray, index: np.ndarray) -> pd.Series:
    """``pool[index]`` as a pandas string column, built through a pyarrow dictionary (fast, compact).

    Falls back to an object column where pandas has no ``"str"`` dtype (pandas < 3).
    """
    try:
        import pyarrow as pa

        arr = pa.DictionaryArray.from_arrays(
            pa.array(index.astype(np.int32)), pa.array(pool.tolist(), type=pa.large_string())
        )
        return pd.Series(pd.array(arr.cast(pa.large_string()), dtype="str"))
    except (ImportError, TypeError, ValueError):
        return pd.Series(pool[index], dtype=object)


def _frame(uid_pool: np.ndarray, user: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"user_id": _str_column(uid_pool, user), "label": pd.Series(labels, dtype=str)})


# ------------------------------------------------------------------------------------------- main


def user_ids(n: int) -> list[str]:
    """The ids of ``n`` generated users, in generation order: u000001, u000002, ..."""
    width = max(6, len(str(n)))
    return [f"u{i + 1:0{width}d}" for i in range(n)]


def generate_synthetic_log(
    n_users: int,
    *,
    seed: int = 0,
    noisy_task: bool = False,
    queries_per_user: tuple[int, int] = QUERIES_PER_USER,
) -> SyntheticLog:
    """Generate a synthetic Korean search log with 7 (or 8 with ``noisy_task``) tasks.

    Args:
        n_users: number of users (>= 1); 1M is feasible (see docs/synthetic.md for measured cost).
        seed: every table except the fixed vocabulary depends on it; equal arguments give equal frames.
        noisy_task: add task TN after T3 (50% of users, each one of 50 classes uniformly at random).
        queries_per_user: inclusive (min, max) of the uniform per-user query count.

    Returns:
        SyntheticLog with the raw frames (see its docstring).
    """
    lo, hi = queries_per_user
    if int(n_users) < 1:
        raise QuerylearnError(f"synthetic: n_users must be at least 1, got {n_users}")
    if not (1 <= lo <= hi):
        raise QuerylearnError(
            f"synthetic: queries_per_user must satisfy 1 <= min <= max, got {queries_per_user}"
        )
    n = int(n_users)
    tab = _tables()
    ss = np.random.SeedSequence(int(seed))
    s_users, s_queries, s_cat, s_labels, s_inter, s_noisy = ss.spawn(6)
    users = _draw_users(n, tab, np.random.default_rng(s_users), (int(lo), int(hi)))
    uid_pool = np.asarray(user_ids(n), dtype=object)

    # queries, chunk by chunk (each chunk its own stream, so memory is bounded by CHUNK_USERS)
    parts = []
    chunk_seeds = s_queries.spawn(-(-n // CHUNK_USERS))
    for c, start in enumerate(range(0, n, CHUNK_USERS)):
        rng = np.random.default_rng(chunk_seeds[c])
        u, var, ts = _query_chunk(users, start, min(n, start + CHUNK_USERS), tab, rng)
        parts.append((u.astype(np.int32), var.astype(np.int32), ts))
    q_user = np.concatenate([p[0] for p in parts])
    q_var = np.concatenate([p[1] for p in parts])
    q_ts = np.concatenate([p[2] for p in parts])
    del parts
    log_end = int(q_ts.max())
    queries = pd.DataFrame(
        {
            "user_id": _str_column(uid_pool, q_user),
            "timestamp": q_ts,
            "query": _str_column(tab.variant_text, q_var),
        }
    )
    del q_user, q_var

    # catalogue
    n_items = int(np.clip(n // 4, 2_000, 50_000))
    catalogue, item_noun, item_cdf = _catalogue(n_items, tab, np.random.default_rng(s_cat))
    item_ids = catalogue["item_id"].to_numpy(dtype=object)
    item_sub = tab.noun_sub[item_noun]
    sub_labels = np.asarray(tab.sub_path, dtype=object)

    # wish-list (T3) and its categories (T2)
    rng = np.random.default_rng(s_labels)
    has_wish = rng.random(n) < P_HAS_WISH
    n_wish = np.where(has_wish, _geometric_counts(rng, n, 0.45, 8), 0)
    w_user = np.repeat(np.arange(n), n_wish)
    w_item = _interest_items(users, w_user, tab, item_cdf, rng, p_fav=0.6)
    w_user, w_item = _dedupe_pairs(w_user, w_item)
    t2_u, t2_s = _category_labels(w_user, item_sub[w_item])

    # purchases (T5) and categories (T4): often wish-listed products or from a wish-listed category
    wish_count = np.bincount(w_user, minlength=n)
    wish_start = np.r_[0, np.cumsum(wish_count)[:-1]]
    p_buy = np.where(wish_count > 0, P_PURCHASE_IF_WISH, P_PURCHASE_NO_WISH)
    n_buy = np.where(rng.random(n) < p_buy, _geometric_counts(rng, n, 0.55, 6), 0)
    b_user = np.repeat(np.arange(n), n_buy)
    b_item = _interest_items(users, b_user, tab, item_cdf, rng, p_fav=0.5)
    r = rng.random(len(b_user))
    has = wish_count[b_user] > 0
    pick = wish_start[b_user] + (rng.random(len(b_user)) * np.maximum(wish_count[b_user], 1)).astype(np.int64)
    pick = np.minimum(pick, max(len(w_item) - 1, 0))
    wished = has & (r < P_BUY_WISHED)
    b_item[wished] = w_item[pick[wished]]
    same_sub = has & (r >= P_BUY_WISHED) & (r < P_BUY_WISHED + P_BUY_WISHED_SUB)
    if same_sub.any():
        nouns = _sample_keyed(tab.noun_cdf, item_sub[w_item[pick[same_sub]]], rng)
        b_item[same_sub] = _sample_keyed(item_cdf, nouns, rng)
    b_user, b_item = _dedupe_pairs(b_user, b_item)
    t4_u, t4_s = _category_labels(b_user, item_sub[b_item])

    # profile tasks with label noise
    age_obs = users.age.copy()
    move = rng.random(n) < P_AGE_NOISE
    step = np.where(rng.random(n) < 0.5, -1, 1)
    age_obs[move] = np.clip(age_obs[move] + step[move], 0, len(V.AGE_GROUPS) - 1)
    gender_obs = np.where(rng.random(n) < P_GENDER_NOISE, 1 - users.gender, users.gender)
    age_names = np.asarray(V.AGE_GROUPS, dtype=object)
    gender_names = np.asarray(V.GENDERS, dtype=object)
    everyone = np.arange(n)

    labels: dict[str, pd.DataFrame] = {
        "T2": _frame(uid_pool, t2_u, sub_labels[t2_s]),
        "T3": _frame(uid_pool, w_user, item_ids[w_item]),
        "T4": _frame(uid_pool, t4_u, sub_labels[t4_s]),
        "T5": _frame(uid_pool, b_user, item_ids[b_item]),
        "T6": _frame(uid_pool, everyone, age_names[age_obs]),
        "T7": _frame(uid_pool, everyone, gender_names[gender_obs]),
    }
    tasks = list(TASKS)
    if noisy_task:
        nrng = np.random.default_rng(s_noisy)
        chosen = np.sort(nrng.permutation(n)[: n // 2])
        # balanced shuffle: each user's class is uniform over the 50, counts differ by at most 1
        classes = nrng.permutation(np.resize(np.arange(NOISY_CLASSES), len(chosen)))
        names = np.asarray([f"c{k:02d}" for k in range(NOISY_CLASSES)], dtype=object)
        labels["TN"] = _frame(uid_pool, chosen, names[classes])
        tasks.insert(3, NOISY_TASK)

    # interactions after the log: clicks/purchases, some from the wish-list, the rest from interests
    irng = np.random.default_rng(s_inter)
    r = irng.random(n)
    n_int = np.where(
        r < P_ZERO_INTERACTIONS,
        0,
        np.where(r < P_ZERO_INTERACTIONS + P_ONE_INTERACTION, 1, 1 + _geometric_counts(irng, n, 0.2, 49)),
    )
    i_user = np.repeat(np.arange(n), n_int)
    i_item = _interest_items(users, i_user, tab, item_cdf, irng, p_fav=0.5)
    hw = wish_count[i_user] > 0
    from_wish = hw & (irng.random(len(i_user)) < 0.2)
    pick = wish_start[i_user] + (irng.random(len(i_user)) * np.maximum(wish_count[i_user], 1)).astype(
        np.int64
    )
    pick = np.minimum(pick, max(len(w_item) - 1, 0))
    i_item[from_wish] = w_item[pick[from_wish]]
    i_user, i_item = _dedupe_pairs(i_user, i_item)
    i_ts = log_end + 3_600 + irng.integers(0, INTERACTION_WINDOW_S, size=len(i_user))
    order = np.lexsort((i_item, i_ts, i_user))
    interactions = pd.DataFrame(
        {
            "user_id": _str_column(uid_pool, i_user[order]),
            "item_id": _str_column(item_ids, i_item[order]),
            "timestamp": i_ts[order].astype(np.int64),
        }
    )

    # ground truth
    paths = np.asarray(tab.sub_path, dtype=object)
    weights = users.slot_w.copy()
    alive = np.ones_like(weights, dtype=bool)
    for k in range(1, N_SLOTS):  # merge duplicate slots (rare) into the first one
        for j in range(k):
            dup = alive[:, k] & (users.slot_sub[:, k] == users.slot_sub[:, j])
            weights[dup, j] += weights[dup, k]
            alive[dup, k] = False
    fmt = np.vectorize(lambda w: f"{w:.3f}", otypes=[object])
    merged_names = paths[users.slot_sub[:, 0]]
    merged_weights = fmt(weights[:, 0])
    for k in range(1, N_SLOTS):
        merged_names = merged_names + np.where(alive[:, k], "|" + paths[users.slot_sub[:, k]], "")
        merged_weights = merged_weights + np.where(alive[:, k], "|" + fmt(weights[:, k]), "")
    top_names = np.asarray([t[0] for t in V.TAXONOMY], dtype=object)
    users_frame = pd.DataFrame(
        {
            "user_id": uid_pool,
            "gender": gender_names[users.gender],
            "age_group": age_names[users.age],
            "interests": merged_names,
            "interest_weights": merged_weights,
            "top_category": top_names[tab.sub_top[users.slot_sub[:, 0]]],
            "non_shopping_rate": users.p_ns.round(4),
            "n_queries": users.n_queries.astype(np.int64),
        }
    )
    return SyntheticLog(
        queries=queries,
        labels=labels,
        tasks=tasks,
        catalogue=catalogue,
        interactions=interactions,
        users=users_frame,
    )
