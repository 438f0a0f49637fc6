"""Property-based tests of the input layer (hypothesis): generated query logs, tasks TOML files and
label tables either give exactly what a straightforward pandas reference computes, or fail with a
one-line QuerylearnError; any other exception (a traceback) fails the test.

Run ``pytest tests/test_properties.py --hypothesis-show-statistics`` to see the number of generated
cases per test.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from querylearn.data.build import BuildOptions
from querylearn.data.dataset import load_dataset
from querylearn.data.normalize import normalize_query
from querylearn.data.sources import prepare_files
from querylearn.data.tasks import KINDS, load_task_sequence
from querylearn.errors import ConfigError, QuerylearnError

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
# QUERYLEARN_HYPOTHESIS_SCALE=10 runs ten times as many cases (not derandomized) for a longer search
SCALE = int(os.environ.get("QUERYLEARN_HYPOTHESIS_SCALE", "1"))
if SCALE > 1:
    SETTINGS = settings(SETTINGS, derandomize=False, database=None)
T1_ONLY = '[[task]]\nname = "T1"\nkind = "next_query"\n'
NS = 10**9

# query text: Hangul syllables, conjoining and compatibility jamo, emoji, control characters, quotes,
# separators, full-width forms, zero-width characters and plain ASCII
QUERY_CHARS = st.one_of(
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),
    st.characters(min_codepoint=0x3131, max_codepoint=0x318E),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F64F),
    st.sampled_from(list("\t\r\n\x00\x01\x1f\x7f\u200b\ufeff\u3000 ,;|\"'`\\")),
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
)
QUERIES = st.text(QUERY_CHARS, min_size=0, max_size=12)
USER_IDS = st.one_of(
    st.integers(0, 30).map(str),
    st.text(st.characters(min_codepoint=0xAC00, max_codepoint=0xAC20), min_size=1, max_size=3),
    st.sampled_from(["u1", " u1 ", "007", "7", "-3", "a b", "이용자"]),
)
# nanoseconds since the epoch, kept inside what every format below can express
TIMES = st.integers(-(2**31) * NS, (2**33) * NS)


@st.composite
def timestamp_text(draw, ns: int) -> tuple[str, int]:
    """One textual form of a time, and the time (ns) the parser must give for it."""
    secs, frac = divmod(ns, NS)
    kind = draw(st.sampled_from(["int", "decimal", "iso", "iso-offset", "iso-space-z"]))
    if kind == "int":
        return str(secs), secs * NS
    if kind == "decimal":  # sign, whole seconds and fraction of |ns| (-1.9 means -1.9 s)
        digits = draw(st.integers(1, 9))
        whole, part = divmod(abs(ns), NS)
        part //= 10 ** (9 - digits)
        sign = -1 if ns < 0 else 1
        text = f"{'-' if ns < 0 else ''}{whole}.{part:0{digits}d}"
        return text, sign * (whole * NS + part * 10 ** (9 - digits))
    micros = frac // 1000
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=secs, microseconds=micros)
    exact = secs * NS + micros * 1000
    if not 1 <= t.year <= 9999:
        return str(secs), secs * NS
    if kind == "iso":
        return t.replace(tzinfo=None).isoformat(), exact
    if kind == "iso-offset":
        hours = draw(st.integers(-12, 14))
        local = t.astimezone(dt.timezone(dt.timedelta(hours=hours)))
        return local.isoformat(), exact
    return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{micros:06d}" if micros else "") + "Z", exact


@st.composite
def query_logs(draw):
    n = draw(st.integers(1, 25))
    rows = []
    for _ in range(n):
        ns = draw(TIMES)
        text, exact = draw(timestamp_text(ns))
        rows.append((draw(USER_IDS), text, exact, draw(QUERIES)))
    return rows


def reference_sequences(rows, seq_len: int) -> dict[str, list[str]]:
    """Straightforward pandas: normalise, drop empty queries, sort each user by (time, file order),
    keep the last seq_len."""
    f = pd.DataFrame(rows, columns=["user", "text", "ns", "query"])
    f["user"] = f["user"].str.strip()
    f["q"] = f["query"].map(normalize_query)
    f["order"] = np.arange(len(f))
    f = f[f["q"] != ""].sort_values(["user", "ns", "order"], kind="stable")
    return {u: list(g["q"])[-seq_len:] for u, g in f.groupby("user", sort=False)}


def dataset_sequences(out: Path) -> dict[str, list[str]]:
    ds = load_dataset(out)
    return {
        u: [ds.vocab.queries[i] for i in row if i] for u, row in zip(ds.user_ids, ds.sequences, strict=True)
    }


def one_line(exc: Exception) -> bool:
    return "\n" not in str(exc) and len(str(exc)) < 600


@settings(SETTINGS, max_examples=60 * SCALE)
@given(rows=query_logs(), seq_len=st.integers(2, 6), chunk_rows=st.integers(4, 30), parquet=st.booleans())
def test_generated_query_logs_match_the_reference(rows, seq_len, chunk_rows, parquet):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        frame = pd.DataFrame([(u, t, q) for u, t, _, q in rows], columns=["user_id", "timestamp", "query"])
        log = d / ("q.parquet" if parquet else "q.csv")
        if parquet:
            frame.to_parquet(log)
        else:
            frame.to_csv(log, index=False)
        (d / "t.toml").write_text(T1_ONLY, encoding="utf-8")
        expected = reference_sequences(rows, seq_len)
        try:
            prepare_files(
                d / "out",
                queries=log,
                tasks=d / "t.toml",
                opts=BuildOptions(seq_len=seq_len, chunk_rows=chunk_rows),
            )
        except QuerylearnError as exc:
            assert one_line(exc), str(exc)
            text = str(exc)
            event(f"one-line error: {text.split(': ', 1)[1][:40] if ': ' in text else text[:40]}")
            # a valid log fails only when there is nothing to learn
            if not expected:
                assert "no usable queries" in text
            elif all(len(s) < 2 for s in expected.values()):
                assert "no user has 2 or more queries" in text
            else:
                raise AssertionError(f"a valid log was refused: {text}") from None
            return
        event("dataset built, sequences equal the reference")
        assert dataset_sequences(d / "out") == expected


@settings(SETTINGS, max_examples=20 * SCALE)
@given(rows=query_logs())
def test_generated_logs_through_the_cli_never_print_a_traceback(rows):
    from querylearn.cli.main import main

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pd.DataFrame([(u, t, q) for u, t, _, q in rows], columns=["user_id", "timestamp", "query"]).to_csv(
            d / "q.csv", index=False
        )
        (d / "t.toml").write_text(T1_ONLY, encoding="utf-8")
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                main(
                    [
                        "prepare",
                        "files",
                        "--queries",
                        str(d / "q.csv"),
                        "--tasks",
                        str(d / "t.toml"),
                        "--out",
                        str(d / "out"),
                        "--seq-len",
                        "3",
                    ]
                )
                code = 0
            except SystemExit as exc:
                code = exc.code
        assert code in (0, 1), (code, err.getvalue())
        assert "Traceback" not in err.getvalue()


# ---- tasks TOML -------------------------------------------------------------------------------

TOML_SCALARS = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xD7A3, blacklist_characters='"\\'), max_size=8),
    st.integers(-5, 5),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(list(KINDS) + ["T1", "T2", "labels.csv", "mrr@5", "accuracy", "hr@5"]),
)
KEYS = st.sampled_from(["name", "kind", "metric", "labels", "nmae", "weight"])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


@st.composite
def tasks_tomls(draw) -> str:
    parts = []
    for i in range(draw(st.integers(0, 4))):
        header = draw(st.sampled_from(["[[task]]"] * 8 + ["[task]", "[[tasks]]"]))
        if draw(st.integers(0, 3)):  # mostly well-formed entries, so that valid files occur too
            kind = "next_query" if i == 0 and draw(st.booleans()) else draw(st.sampled_from(KINDS[1:]))
            entry = {"name": f"T{i + 1}", "kind": kind}
            if kind != "next_query":
                entry["labels"] = f"l{i}.csv"
            if not draw(st.integers(0, 3)):
                entry[draw(KEYS)] = draw(TOML_SCALARS)
        else:
            entry = draw(
                st.dictionaries(KEYS, st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=2)), max_size=5)
            )
        parts.append(header + "\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in entry.items()))
    if not draw(st.integers(0, 3)):
        parts.append(draw(st.text(max_size=20)))
    return "\n".join(parts)


@settings(SETTINGS, max_examples=300 * SCALE)
@given(text=tasks_tomls())
def test_generated_tasks_toml_parse_or_fail_in_one_line(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tasks.toml"
        path.write_text(text, encoding="utf-8")
        try:
            specs = load_task_sequence(path)
        except ConfigError as exc:
            assert one_line(exc) and str(exc).startswith(str(path)), str(exc)
            event("one-line ConfigError")
            return
        event("parsed")
        assert specs and all(isinstance(s.name, str) and s.kind in KINDS for s in specs)
        assert [s.kind == "next_query" for s in specs].count(True) <= 1


# ---- label tables -------------------------------------------------------------------------------

LABELS = st.one_of(
    st.sampled_from(["a", "b", "c", " a", "가", "😀", "x,y", '"q"']),
    st.text(QUERY_CHARS, min_size=1, max_size=4),
)


@settings(SETTINGS, max_examples=80 * SCALE)
@given(
    kind=st.sampled_from(["multi_target", "classify"]),
    rows=st.lists(
        st.tuples(st.sampled_from(["1", "2", "3", "4", "stranger", " 2 "]), LABELS), min_size=1, max_size=20
    ),
    min_label_count=st.integers(1, 2),
)
def test_generated_label_tables_match_the_reference(kind, rows, min_label_count):
    log = "".join(f"{u},{t},q{(u * t) % 4}\n" for u in range(1, 5) for t in range(1, 4))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "q.csv").write_text("user_id,timestamp,query\n" + log, encoding="utf-8")
        pd.DataFrame(rows, columns=["user_id", "label"]).to_csv(d / "lab.csv", index=False)
        (d / "t.toml").write_text(T1_ONLY + f'[[task]]\nname = "T2"\nkind = "{kind}"\nlabels = "lab.csv"\n')
        # reference: strip, keep users of the log, drop duplicates, drop labels below min_label_count
        f = pd.DataFrame(rows, columns=["user", "label"]).assign(
            user=lambda x: x["user"].str.strip(), label=lambda x: x["label"].str.strip()
        )
        f = f[(f["label"] != "") & f["user"].isin(["1", "2", "3", "4"])].drop_duplicates()
        counts = f["label"].value_counts()
        f = f[f["label"].map(counts) >= min_label_count]
        try:
            prepare_files(
                d / "out",
                queries=d / "q.csv",
                tasks=d / "t.toml",
                opts=BuildOptions(seq_len=3, min_label_count=min_label_count),
            )
        except QuerylearnError as exc:
            assert one_line(exc), str(exc)
            event("one-line error")
            return
        event("dataset built, labels equal the reference")
        ds = load_dataset(d / "out")
        t2 = ds.task("T2")
        got = sorted(
            (ds.user_ids[u], t2.label_names[lab]) for u, lab in zip(t2.user_index, t2.label, strict=True)
        )
        assert got == sorted(zip(f["user"], f["label"], strict=True))
        if kind == "classify":
            assert f["user"].is_unique and (f["label"].value_counts() >= 2).all()


def test_reference_helpers_known_answer():
    rows = [("1", "x", 5 * NS, "b"), ("1", "x", 2 * NS, "a"), ("2", "x", 0, "  "), ("1", "x", 5 * NS, "c")]
    assert reference_sequences(rows, 2) == {"1": ["b", "c"]}
