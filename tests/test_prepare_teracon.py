"""`prepare teracon`: the official TERACON/CONURE task files (t1 sequences, tK `,,` targets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from querylearn.cli.main import main
from querylearn.data.build import BuildOptions
from querylearn.data.dataset import load_dataset
from querylearn.data.teracon_format import official_split, prepare_teracon
from querylearn.errors import DataError, QuerylearnError

TERACON_ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "teracon-ml100k"

T1 = "0,0,3,5,7\n0,0,0,0,9\n1,3,3,5,10\n0,0,0,7,3\n"
T2 = "0,0,3,5,7,,10,11\n1,3,3,5,10,,11\n0,0,0,7,3,,12,10,10\n"  # multi-target; one duplicate target
T3 = "0,0,3,5,7,,0\n0,0,0,0,9,,1\n1,3,3,5,10,,1\n0,0,0,7,3,,0\n"  # gender-like
T4 = "0,0,0,3,5,,2\n0,0,0,0,9,,2\n0,4,4,4,4,,1\n1,3,3,5,10,,1\n"  # two sequences not in t1


def write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


@pytest.fixture
def tiny(tmp_path) -> Path:
    folder = write(
        tmp_path / "in",
        {
            "t1_seq.csv": T1,
            "t2_items.csv": T2,
            "t3_gender.csv": T3,
            "t4_x.csv": T4,
            "README.md": "not a task file\n",
        },
    )
    prepare_teracon(tmp_path / "ds", path=folder, opts=BuildOptions())
    return tmp_path / "ds"


def test_vocabulary_sequences_and_users(tiny):
    ds = load_dataset(tiny)
    # <pad>, <unk>, then t1's items in numeric order (10 after 9), with their t1 counts
    assert ds.vocab.queries == ["<pad>", "<unk>", "1", "3", "5", "7", "9", "10"]
    assert ds.vocab.counts == [0, 0, 1, 4, 2, 2, 1, 1]
    assert ds.seq_len == 5  # the files' width
    # t1 users by line number, then the two T4 sequences found in no t1 line
    assert ds.user_ids == ["1", "2", "3", "4", "t4_x.csv:1", "t4_x.csv:3"]
    assert ds.sequences.tolist() == [
        [0, 0, 3, 4, 5],
        [0, 0, 0, 0, 6],
        [2, 3, 3, 4, 7],
        [0, 0, 0, 5, 3],
        [0, 0, 0, 3, 4],
        [0, 1, 1, 1, 1],  # item 4 is not in t1: <unk>
    ]
    s = ds.manifest["summary"]
    assert s["users_only_in_task_files"] == 2 and s["kept_positions_unk"] == 4
    assert ds.manifest["inputs"]["files"] == {
        "T1": "t1_seq.csv",
        "T2": "t2_items.csv",
        "T3": "t3_gender.csv",
        "T4": "t4_x.csv",
    }
    assert ds.manifest["inputs"]["user_ids"] == "t1 line numbers"


def test_tasks_kinds_and_labels(tiny):
    ds = load_dataset(tiny)
    assert [(t.name, t.kind, t.metric) for t in ds.tasks] == [
        ("T1", "next_query", "mrr@5"),
        ("T2", "multi_target", "mrr@5"),
        ("T3", "classify", "accuracy"),
        ("T4", "classify", "accuracy"),
    ]
    t1 = ds.task("T1")  # line 2 has one item: nothing to predict
    assert t1.user_index.tolist() == [0, 2, 3] and t1.label.tolist() == [5, 7, 3] and t1.n_labels == 8
    t2 = ds.task("T2")
    assert t2.label_names == ["10", "11", "12"] and t2.label_counts == [2, 2, 1]
    assert list(zip(t2.user_index.tolist(), t2.label.tolist(), strict=True)) == [
        (0, 0),
        (0, 1),
        (2, 1),
        (3, 2),
        (3, 0),
    ]
    t3 = ds.task("T3")
    assert t3.user_index.tolist() == [0, 1, 2, 3] and t3.label.tolist() == [0, 1, 1, 0]
    t4 = ds.task("T4")
    assert t4.label_names == ["1", "2"]
    assert t4.user_index.tolist() == [1, 2, 4, 5] and t4.label.tolist() == [1, 0, 1, 0]
    st = ds.manifest["summary"]["tasks"]
    assert st["T1"]["skipped_users_with_one_query"] == 1
    assert st["T2"] == {
        "file": "t2_items.csv",
        "lines": 3,
        "targets": 6,
        "skipped_duplicate_rows": 1,
        "skipped_rare_label_rows": 0,
        "labels_seen_once": 1,
        "lines_not_in_t1": 0,
    }
    assert st["T4"]["lines_not_in_t1"] == 2
    # --split user (default): every task inherits its users' split
    for t in ds.tasks:
        assert (t.split == ds.user_split[t.user_index]).all()


def test_single_target_item_task_with_many_targets_is_ranked(tmp_path):
    # one target per user but 22 distinct targets: the official evaluator ranks (> 20 labels)
    t1 = "".join(f"0,{u + 1},{u + 2}\n" for u in range(22))
    t2 = "".join(f"0,{u + 1},{u + 2},,{100 + u}\n" for u in range(22))
    t3 = "".join(f"0,{u + 1},{u + 2},,{u % 3}\n" for u in range(22))
    prepare_teracon(
        tmp_path / "ds", path=write(tmp_path / "in", {"t1": t1, "t2": t2, "t3": t3}), opts=BuildOptions()
    )
    ds = load_dataset(tmp_path / "ds")
    assert ds.task("T2").kind == "multi_target" and ds.task("T2").n_labels == 22
    assert ds.task("T3").kind == "classify" and ds.task("T3").label_counts == [8, 7, 7]
    # classes below --min-label-count are dropped and counted
    t3 = "".join(f"0,{u + 1},{u + 2},,{u % 3 if u < 20 else 100 + u}\n" for u in range(22))
    prepare_teracon(
        tmp_path / "d2",
        path=write(tmp_path / "in2", {"t1": t1, "t2": t3}),
        opts=BuildOptions(min_label_count=2),
    )
    d2 = load_dataset(tmp_path / "d2")
    assert d2.task("T2").kind == "classify" and d2.task("T2").label_names == ["0", "1", "2"]
    assert d2.manifest["summary"]["tasks"]["T2"]["skipped_rare_label_rows"] == 2


def test_identical_histories_are_matched_in_line_order(tmp_path):
    t1 = "3,5\n3,5\n7,9\n5,7\n"
    t2 = "3,5,,0\n3,5,,1\n7,9,,0\n5,7,,1\n"
    prepare_teracon(
        tmp_path / "ds", path=write(tmp_path / "in", {"t1.csv": t1, "t2.csv": t2}), opts=BuildOptions()
    )
    t2k = load_dataset(tmp_path / "ds").task("T2")
    assert t2k.kind == "classify"
    assert t2k.user_index.tolist() == [0, 1, 2, 3] and t2k.label.tolist() == [0, 1, 0, 1]


def test_official_split_known_answer():
    # numpy.random.seed(0); numpy.random.permutation(10) == [2 8 4 9 1 6 7 3 0 5]: 8 train, 1 valid, 1 test
    assert official_split(10, 0).tolist() == [1, 0, 0, 0, 0, 2, 0, 0, 0, 0]


def official_codes(n: int, seed: int) -> np.ndarray:
    """The official scripts' slicing (train_teracon.py), written out independently for the test."""
    np.random.seed(seed)
    perm = np.random.permutation(np.arange(n))
    dev = -1 * int(0.2 * float(n))
    dev_valid = int(dev * 0.75)
    codes = np.empty(n, dtype=np.int8)
    codes[perm[:dev]], codes[perm[dev:dev_valid]], codes[perm[dev_valid:]] = 0, 1, 2
    return codes


def test_example_split_is_the_official_one(tmp_path):
    rng = np.random.default_rng(1)
    lines1, lines2, lines3 = [], [], []
    for u in range(60):
        items = rng.integers(1, 30, size=int(rng.integers(2, 8)))
        seq = ",".join(["0"] * (8 - len(items)) + [str(i) for i in items])
        lines1.append(seq)
        lines2.append(
            seq + ",," + ",".join(str(t) for t in rng.choice(40, size=int(rng.integers(1, 5)), replace=False))
        )
        lines3.append(seq + ",," + str(u % 3))
    folder = write(
        tmp_path / "in",
        {
            "t1_seq.csv": "\n".join(lines1) + "\n",
            "t2_items.csv": "\n".join(lines2) + "\n",
            "t3_class.csv": "\n".join(lines3) + "\n",
        },
    )
    prepare_teracon(tmp_path / "ds", path=folder, opts=BuildOptions(split="example", seed=3))
    ds = load_dataset(tmp_path / "ds")
    assert ds.n_users == 60 and ds.manifest["split"]["mode"] == "example"
    assert ds.task("T1").split.tolist() == official_codes(60, 3).tolist()
    n_targets = sum(len(x.split(",,")[1].split(",")) for x in lines2)
    assert len(ds.task("T2").split) == n_targets
    assert ds.task("T2").split.tolist() == official_codes(n_targets, 3).tolist()
    assert ds.task("T3").split.tolist() == official_codes(60, 3).tolist()
    assert ds.task("T2").split_counts() == {
        "train": n_targets - int(0.2 * n_targets),
        "valid": int(0.2 * n_targets) - int(int(0.2 * n_targets) * 0.75),
        "test": int(int(0.2 * n_targets) * 0.75),
    }


def test_seq_len_option_users_file_bom_and_crlf(tmp_path):
    folder = write(
        tmp_path / "in",
        {"t1_seq.csv": "\ufeff" + T1.replace("\n", "\r\n"), "t2_g.csv": T3, "users.csv": "u7\nu8\nu9\nu10\n"},
    )  # a BOM and CRLF line ends are read
    prepare_teracon(tmp_path / "ds", path=folder, opts=BuildOptions(seq_len=3), seq_len_from_files=False)
    ds = load_dataset(tmp_path / "ds")
    assert ds.user_ids == ["u7", "u8", "u9", "u10"] and ds.manifest["inputs"]["user_ids"] == "users.csv"
    assert ds.sequences.tolist() == [[3, 4, 5], [0, 0, 6], [3, 4, 7], [0, 5, 3]]
    assert ds.manifest["summary"]["users_truncated_to_seq_len"] == 1


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"t1.csv": "0,3,5\n0,x,5\n"}, r"t1.csv, row 2: item 2 is 'x', not a non-negative integer"),
        ({"t1.csv": "0,3,5\n3,0,5\n"}, r"t1.csv, row 2: padding 0 at item 2 comes after an item"),
        ({"t1.csv": "0,3,5\n\n0,3,6\n"}, r"t1.csv, row 2: empty line"),
        ({"t1.csv": "0,3,5\n0,3,5,,1\n"}, r"t1.csv, row 2: ',,' in the t1 sequence file"),
        ({"t1.csv": "0,3,5\n", "t2.csv": "0,3,5,,1\n0,3,5\n"}, r"t2.csv, row 2: no ',,' between"),
        ({"t1.csv": "0,3,5\n", "t2.csv": "0,3,5,,1,,2\n"}, r"t2.csv, row 1: more than one ',,'"),
        ({"t1.csv": "0,3,5\n", "t2.csv": "0,3,5,,\n"}, r"t2.csv, row 1: no target after ',,'"),
        (
            {"t1.csv": "0,3,5\n", "t2.csv": "0,3,5,,1\n0,3,5,,1,b\n"},
            r"t2.csv, row 2: target 2 is 'b', not an integer",
        ),
        (
            {"t1.csv": "0,3,5\n0,5,3\n", "t2.csv": "0,3,5,,1\n0,5,3,,0\n"},
            r"t2.csv, row 1: class '1' of task T2 occurs only once, .*--min-label-count 2",
        ),
        ({"t2.csv": "0,3,5,,1\n"}, r"no t1 sequence file"),
        ({"t1.csv": "0,3,5\n", "t3.csv": "0,3,5,,1\n"}, r"no file for task t2"),
        (
            {"t1.csv": "0,3,5\n", "t2.csv": "0,3,5,,1\n", "t2_b.csv": "0,3,5,,1\n"},
            r"a second file for task t2",
        ),
        ({"t1.csv": "0,3,5\n0,3,6\n", "users.csv": "a\n"}, r"users.csv: 1 lines but the t1 file has 2"),
        ({"t1.csv": "0,3,5\n0,3,6\n", "users.csv": "a\na\n"}, r"users.csv, row 2: user id 'a' appears twice"),
        ({"t1.csv": "0,0,5\n0,0,6\n"}, r"no line has 2 or more items"),
    ],
)
def test_malformed_input_is_one_clear_error(tmp_path, files, message):
    folder = write(tmp_path / "in", files)
    with pytest.raises(DataError, match=message):
        prepare_teracon(tmp_path / "ds", path=folder, opts=BuildOptions())


def test_cli_prepare_teracon(tmp_path, capsys):
    folder = write(tmp_path / "in", {"t1_seq.csv": T1, "t2_items.csv": T2, "t3_gender.csv": T3})
    with pytest.raises(SystemExit) as ok:
        main(
            ["prepare", "teracon", "--path", str(folder), "--out", str(tmp_path / "ds"), "--split", "example"]
        )
    assert ok.value.code == 0
    assert "teracon dataset" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "ds")
    assert ds.seq_len == 5 and ds.manifest["split"]["mode"] == "example" and len(ds.tasks) == 3
    from querylearn.config_loader import load_config  # the resolved options record the files' length

    assert load_config(BuildOptions, tmp_path / "ds" / "config.toml").seq_len == 5
    (folder / "t2_items.csv").write_text("0,0,3,5,7,,1\n0,0,3,5,7\n")
    with pytest.raises(SystemExit) as bad:
        main(["prepare", "teracon", "--path", str(folder), "--out", str(tmp_path / "x")])
    assert bad.value.code == 1
    err = capsys.readouterr().err
    assert "t2_items.csv, row 2: no ',,'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as no_path:
        main(["prepare", "teracon", "--out", str(tmp_path / "y")])
    assert no_path.value.code == 1 and "needs --path" in capsys.readouterr().err
    with pytest.raises(QuerylearnError, match="exclude-last-interaction"):
        prepare_teracon(tmp_path / "z", path=folder, opts=BuildOptions(exclude_last_interaction=True))


@pytest.fixture(scope="module")
def teracon_ml100k() -> Path:
    if not (TERACON_ML100K / "t1_seq.csv").is_file():
        pytest.skip(f"the official-format MovieLens-100K files are not at {TERACON_ML100K}")
    return TERACON_ML100K


def test_official_ml100k_files_match_their_stats(tmp_path, teracon_ml100k):
    stats = json.loads((teracon_ml100k / "stats.json").read_text())
    prepare_teracon(tmp_path / "ds", path=teracon_ml100k, opts=BuildOptions(split="example"))
    ds = load_dataset(tmp_path / "ds")
    assert ds.n_users == stats["users_kept"] == 907 and ds.seq_len == stats["protocol"]["seq_len"] == 30
    # the official index counts padding; querylearn adds <unk>
    assert (
        len(ds.vocab) == stats["t1_index_size_incl_pad"] + 1 and len(ds.vocab) - 2 == stats["t1_unique_items"]
    )
    assert ds.manifest["summary"]["users_only_in_task_files"] == 0
    kinds = ["next_query", "multi_target", "multi_target", "classify", "classify"]
    for task, kind, (fname, st) in zip(ds.tasks, kinds, stats["tasks"].items(), strict=True):
        assert ds.manifest["inputs"]["files"][task.name] == fname
        assert task.kind == kind
        assert len(task.user_index) == st["examples"] and task.n_users == st["users"]
        assert task.split_counts() == {k: st[k] for k in ("train", "valid", "test")}
        if kind != "next_query":
            assert task.n_labels == st["n_classes_or_targets"]
    assert (
        dict(zip(ds.task("T4").label_names, ds.task("T4").label_counts, strict=True))
        == stats["t4_class_counts"]
    )
    assert (
        dict(zip(ds.task("T5").label_names, ds.task("T5").label_counts, strict=True))
        == stats["t5_class_counts"]
    )
    # user 1's sequence is the first t1 line, item for item
    first = (teracon_ml100k / "t1_seq.csv").read_text().splitlines()[0].split(",")
    assert [ds.vocab.queries[i] for i in ds.sequences[0] if i] == [x for x in first if x != "0"]
    assert ds.user_ids[:3] == ["1", "2", "3"]  # users.csv names them
    # --split user: the same examples, split by user
    prepare_teracon(tmp_path / "du", path=teracon_ml100k, opts=BuildOptions())
    du = load_dataset(tmp_path / "du")
    for t in du.tasks:
        assert len(t.user_index) == len(ds.task(t.name).user_index)
        assert (t.split == du.user_split[t.user_index]).all()
