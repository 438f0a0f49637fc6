"""A small raw query log in the ``prepare files`` format, made of the tiny KoBERT's words.

Each user searches one of four topics (ten words each): every query is two words of the topic, so
the tiny KoBERT embeds every query of the log and any new two-word query. T2 (classify) is the topic.
"""

from __future__ import annotations

import random
from pathlib import Path

from kobert_tiny import WORDS

TASKS_TOML = (
    '[[task]]\nname = "T1"\nkind = "next_query"\n\n'
    '[[task]]\nname = "T2"\nkind = "classify"\nlabels = "labels.csv"\n'
)


def topic_words(topic: int) -> list[str]:
    return WORDS[topic * 10 : (topic + 1) * 10]


def write_topic_log(out_dir: str | Path, *, n_users: int = 120, seed: int = 0) -> tuple[Path, Path]:
    """Write ``log.csv``, ``labels.csv`` and ``tasks.toml`` into ``out_dir``; returns (log, tasks)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = ["user_id,timestamp,query"]
    labels = ["user_id,label"]
    for u in range(n_users):
        topic = rng.randrange(4)
        words = topic_words(topic)
        for t in range(rng.randint(3, 9)):
            rows.append(f"u{u},{1000 + 10 * t},{rng.choice(words)} {rng.choice(words)}")
        labels.append(f"u{u},topic{topic}")
    (out / "log.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (out / "labels.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (out / "tasks.toml").write_text(TASKS_TOML, encoding="utf-8")
    return out / "log.csv", out / "tasks.toml"
