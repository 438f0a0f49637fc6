"""The ceiling of next-query prediction (T1) on a synthetic dataset: the generator's own distribution.

    python bench/t1_oracle.py DATASET_DIR [--split test] [--json OUT.json]

(also prints the training-free references of ``bench/t1_heuristics.py`` on the same rows).

The synthetic log is a Markov chain written down in ``querylearn/data/synthetic.py`` (and
docs/synthetic.md). This script regenerates the dataset's users and queries from its stored
``users``/``seed`` (same draws, same order), records the chain's state before each user's last
query, and ranks every query of the vocabulary by its exact probability of being that last query:

    P(q) = P_REPEAT  · (1/min(t, 4)) Σ_lag [q = x_{t-lag}]                        (repeat, mode 0)
         + P_REFINE  · V(q | noun_{t-1}, gender)                                   (refine, mode 1)
         + P_SAME_SUB· N(q | slot_{t-1})                                           (same sub, mode 2)
         + P_SWITCH  · [p_ns N(q | non-shopping) + (1 - p_ns) Σ_k w_k N(q | k)]    (switch, mode 3)

with V(q | noun, g) = Σ_i P(intent i | noun, g) P(q | i) (the gender-twin swap included) and
N(q | slot) = ½ V(q | favourite noun) + ½ Σ_n P(n | sub) V(q | n) (no favourite for non-shopping).
Surface forms that normalise to the same vocabulary entry are summed.

It knows what no model can see (the user's latent gender, interest slots and weights, favourite
nouns, non-shopping rate and the chain's current slot), so its MRR@5 is an **upper bound** on any
ranker that reads the user's history: ranking by the true conditional probability maximises the
expected reciprocal rank given that information, and more information cannot lower it. The
script also checks the regeneration: every row's last query must equal the dataset's T1 target.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np

from querylearn.data import synthetic as S
from querylearn.data.normalize import normalize_query
from querylearn.metrics import ranking_metrics


def _within_key(cdf: np.ndarray) -> np.ndarray:
    """Per-entry probabilities from a ``_key_cdf`` table (key + cumulative weight): [n]."""
    frac = cdf - np.floor(cdf - 1e-12)  # cumulative weight within the key's run, in (0, 1]
    keys = np.floor(cdf - 1e-12)
    prev = np.r_[0.0, frac[:-1]]
    first = np.r_[True, keys[1:] != keys[:-1]]
    return np.where(first, frac, frac - prev)


def _runs(keys: np.ndarray) -> dict[int, np.ndarray]:
    """key -> indices of its run (keys sorted)."""
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    return {int(keys[a]): np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)}


class Oracle:
    """The generator's next-query distribution over vocabulary ids, from its tables."""

    def __init__(self, tab, vocab: dict[str, int]):
        self.tab = tab
        self.n_vocab = len(vocab)
        # every surface form's vocabulary id (forms normalising alike share one id)
        self.var_vocab = np.asarray(
            [vocab.get(normalize_query(t), 1) for t in tab.variant_text], dtype=np.int64
        )
        p_int = _within_key(tab.intent_cdf)  # [I] P(intent | noun), before the gender swap
        p_var = _within_key(tab.variant_cdf)  # [Q] P(form | intent)
        self.p_noun = _within_key(tab.noun_cdf)  # [N] P(noun | sub)
        self.int_of_noun = _runs(tab.intent_noun)
        self.var_of_int = _runs(tab.variant_intent)
        self.noun_of_sub = _runs(tab.noun_sub)
        self.p_int, self.p_var = p_int, p_var
        self._v: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._sub: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def v(self, noun: int, g: int) -> tuple[np.ndarray, np.ndarray]:
        """V(. | noun, gender g): (vocabulary ids, probabilities), ids unique."""
        key = (noun, g)
        if key not in self._v:
            tab = self.tab
            ints = self.int_of_noun[noun]
            p = self.p_int[ints].copy()
            ig = tab.intent_gender[ints]
            wrong = (ig > 0) & (ig != g + 1)
            moved = p * wrong * S.P_GENDER_MATCH
            p -= moved
            pos = {int(i): k for k, i in enumerate(ints)}
            for k in np.flatnonzero(wrong):
                p[pos[int(tab.intent_twin[ints[k]])]] += moved[k]
            ids, probs = [], []
            for k, i in enumerate(ints):
                forms = self.var_of_int[int(i)]
                ids.append(self.var_vocab[forms])
                probs.append(p[k] * self.p_var[forms])
            self._v[key] = _merge(np.concatenate(ids), np.concatenate(probs))
        return self._v[key]

    def sub_mix(self, sub: int, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Σ_n P(n | sub) V(. | n, g)."""
        key = (sub, g)
        if key not in self._sub:
            parts = [self.v(int(n), g) for n in self.noun_of_sub[sub]]
            w = self.p_noun[self.noun_of_sub[sub]]
            self._sub[key] = _merge(
                np.concatenate([ids for ids, _ in parts]),
                np.concatenate([wn * p for wn, (_, p) in zip(w, parts, strict=True)]),
            )
        return self._sub[key]

    def slot_mix(self, sub: int, fav, g: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """N(. | slot): the favourite noun half of the time (shopping slots), else a noun of the sub.
        ``fav``: None (non-shopping), a noun, or {noun: posterior probability}."""
        if fav is None:
            return [(*self.sub_mix(sub, g), 1.0)]
        favs = {int(fav): 1.0} if not isinstance(fav, dict) else fav
        out = [(*self.v(f, g), S.P_FAV_NOUN * pf) for f, pf in favs.items()]
        return out + [(*self.sub_mix(sub, g), 1.0 - S.P_FAV_NOUN)]

    def scores(
        self, history: np.ndarray, noun: int, slot: int, g: int, slot_sub, slot_fav, w, p_ns
    ) -> np.ndarray:
        """P(last query = q) for every vocabulary id q: [V]. history: the user's earlier forms;
        slot_sub [K]: the slots' sub-categories; slot_fav [K]: each slot's favourite noun (or a
        {noun: probability} posterior); w [K]: slot weights; slot: the current slot (K = non-shopping)."""
        out = np.zeros(self.n_vocab)
        p_switch = 1.0 - S.P_REPEAT - S.P_REFINE - S.P_SAME_SUB
        lags = history[-min(len(history), 4) :]
        np.add.at(out, self.var_vocab[lags], S.P_REPEAT / len(lags))
        ids, p = self.v(noun, g)
        out[ids] += S.P_REFINE * p
        n_subs = len(self.tab.sub_path)

        def slot_parts(k):
            if k >= len(slot_sub):
                return self.slot_mix(n_subs, None, g)
            return self.slot_mix(int(slot_sub[k]), slot_fav[k], g)

        for ids, p, wk in slot_parts(slot):
            out[ids] += S.P_SAME_SUB * wk * p
        for ids, p, wk in slot_parts(len(slot_sub)):
            out[ids] += p_switch * p_ns * wk * p
        for k in range(len(slot_sub)):
            for ids, p, wk in slot_parts(k):
                out[ids] += p_switch * (1.0 - p_ns) * w[k] * wk * p
        return out

    def plug_in(self, history: np.ndarray) -> np.ndarray:
        """The same distribution with every latent estimated from the history alone [V]: gender
        from the gendered forms (posterior), slots = the shopping sub-categories seen, weights and
        the non-shopping rate from visit counts (add-one), each slot's favourite noun by its
        posterior under the ½ favourite / ½ popularity mixture, current noun and slot from the
        last query. A generator-aware ranker that sees what a model sees."""
        tab = self.tab
        n_subs = len(tab.sub_path)
        intent = tab.variant_intent[history]
        nouns = tab.intent_noun[intent]
        subs = tab.noun_sub[nouns]
        ig = tab.intent_gender[intent]
        n_f, n_m = int((ig == 1).sum()), int((ig == 2).sum())
        match = S.P_GENDER_MATCH + (1.0 - S.P_GENDER_MATCH) / 2.0  # a gendered form matches the user
        log_lr = (n_f - n_m) * np.log(match / (1.0 - match))
        p_female = 1.0 / (1.0 + np.exp(-(np.log(S.V.FEMALE_SHARE / (1 - S.V.FEMALE_SHARE)) + log_lr)))
        shop = subs < n_subs
        seen, counts = np.unique(subs[shop], return_counts=True)
        order = np.argsort(-counts, kind="stable")[: S.N_SLOTS]
        slot_sub, counts = seen[order], counts[order]
        w = (counts + 1.0) / (counts.sum() + len(counts))
        p_ns = (int((~shop).sum()) + 1.0) / (len(history) + 2.0)
        favs = []
        for sub in slot_sub:
            cand = self.noun_of_sub[int(sub)]
            c = np.bincount(nouns[subs == sub] - cand[0], minlength=len(cand)).astype(np.float64)
            pn = self.p_noun[cand]
            logp = np.log(pn) + c * np.log((1.0 + pn) / pn)  # P(fav = n | draws) up to a constant
            post = np.exp(logp - logp.max())
            post /= post.sum()
            top = np.argsort(-post)[:5]
            favs.append({int(cand[i]): float(post[i]) / float(post[top].sum()) for i in top})
        last_sub = int(subs[-1])
        known = last_sub in set(slot_sub.tolist())
        slot = int(np.flatnonzero(slot_sub == last_sub)[0]) if known else len(slot_sub)
        noun = int(nouns[-1])
        # gender 0 = female (the generator's encoding), 1 = male
        return p_female * self.scores(history, noun, slot, 0, slot_sub, favs, w, p_ns) + (
            1.0 - p_female
        ) * self.scores(history, noun, slot, 1, slot_sub, favs, w, p_ns)


def _merge(ids: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(ids, return_inverse=True)
    return uniq, np.bincount(inv, weights=p, minlength=len(uniq))


def t1_oracle(data: str | Path, split: str = "test") -> dict:
    """{"n_users", "matched", "oracle" (ranking metrics, ties in the target's favour, as the
    model's metrics), "oracle_ties_last" (ties against it)} on the dataset's T1 ``split`` rows."""
    from querylearn.continual.data import task_data
    from querylearn.data.dataset import load_dataset

    data = Path(data)
    cfg = tomllib.loads((data / "config.toml").read_text(encoding="utf-8"))
    if not json.loads((data / "dataset.json").read_text(encoding="utf-8")).get("synthetic"):
        raise SystemExit(f"{data}: not a synthetic dataset (the oracle needs the generator)")
    ds = load_dataset(data)
    name = next(t.name for t in ds.tasks if t.kind == "next_query")
    t = task_data(ds, name)
    queries = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["queries"]
    vocab = {q: i for i, q in enumerate(queries)}
    user_ids = json.loads((data / "users.json").read_text(encoding="utf-8"))["user_ids"]

    n = int(cfg["users"])
    tab = S._tables()
    ss = np.random.SeedSequence(int(cfg.get("seed", 0)))
    s_users, s_queries, *_ = ss.spawn(6)
    users = S._draw_users(n, tab, np.random.default_rng(s_users), S.QUERIES_PER_USER)
    index = {uid: i for i, uid in enumerate(S.user_ids(n))}
    rows = t.users[split]
    want = {index[user_ids[r]]: k for k, r in enumerate(rows)}
    oracle = Oracle(tab, vocab)
    scores_target = np.zeros(len(rows))
    above = np.zeros(len(rows), dtype=np.int64)
    ties = np.zeros(len(rows), dtype=np.int64)
    plug_above = np.zeros(len(rows), dtype=np.int64)
    matched = 0
    chunk_seeds = s_queries.spawn(-(-n // S.CHUNK_USERS))
    for c, lo in enumerate(range(0, n, S.CHUNK_USERS)):
        hi = min(n, lo + S.CHUNK_USERS)
        trace: dict = {}
        u, var, _ = S._query_chunk(users, lo, hi, tab, np.random.default_rng(chunk_seeds[c]), trace)
        ends = np.cumsum(users.n_queries[lo:hi])
        starts = ends - users.n_queries[lo:hi]
        for j in range(hi - lo):
            i = lo + j
            if i not in want:
                continue
            k = want[i]
            forms = var[starts[j] : ends[j]]
            target = int(t.labels[split][k])
            matched += int(oracle.var_vocab[forms[-1]] == target)
            sc = oracle.scores(
                forms[:-1], int(trace["noun"][j]), int(trace["slot"][j]), int(users.gender[i]),
                users.slot_sub[i], users.slot_noun[i], users.slot_w[i], float(users.p_ns[i]),
            )  # fmt: skip
            sc[:2] = -1.0  # padding and <unk> are never candidates
            scores_target[k] = sc[target]
            above[k] = int((sc > sc[target]).sum())
            ties[k] = int((sc == sc[target]).sum()) - 1
            pl = oracle.plug_in(forms[:-1])
            pl[:2] = -1.0
            plug_above[k] = int((pl > pl[target]).sum())
    return {
        "task": name,
        "split": split,
        "n_users": len(rows),
        "matched": matched,
        "oracle": ranking_metrics(above),
        "oracle_ties_last": ranking_metrics(above + ties),
        "plug_in": ranking_metrics(plug_above),
        "target_probability_mean": float(scores_target.mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--split", default="test")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args()
    res = t1_oracle(args.data, args.split)
    from t1_heuristics import t1_heuristics  # bench/, beside this script

    h = t1_heuristics(args.data, args.split)
    res["references"] = {k: h[k] for k in ("recent-distinct", "recency-frequency", "most-popular")}
    print(f"{res['task']} {args.split}: {res['n_users']} users, last query regenerated for {res['matched']}")
    for key in ("oracle", "oracle_ties_last", "plug_in"):
        m = res[key]
        print(f"{key:<17} MRR@5 {m['mrr@5']:.4f}  HR@5 {m['hr@5']:.4f}  HR@20 {m['hr@20']:.4f}")
    print(f"mean probability of the true last query: {res['target_probability_mean']:.4f}")
    best = max(res["references"].values())
    for name, v in res["references"].items():
        print(f"{name:<17} MRR@5 {v:.4f}")
    print(f"oracle / best reference: {res['oracle']['mrr@5'] / best:.2f}x; "
          f"plug-in / best reference: {res['plug_in']['mrr@5'] / best:.2f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
