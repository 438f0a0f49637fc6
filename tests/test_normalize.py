import pytest

from querylearn.data.normalize import normalize_query


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("캠핑 의자", "캠핑 의자"),
        ("  캠핑   의자  ", "캠핑 의자"),
        ("캠핑\t의자\n", "캠핑 의자"),
        ("ㅋㅋ", "ㅋㅋ"),  # compatibility jamo untouched (no NFKC)
        ("ㅋㅋㅋ 웃긴 영상", "ㅋㅋㅋ 웃긴 영상"),
        ("ＬＥＤ　조명", "led 조명"),  # full-width Latin + ideographic space
        ("Nike 운동화", "nike 운동화"),
        ("ＮＩＫＥ１２３", "nike123"),
        ("Café CRÈME", "café crème"),
        ("\u1112\u1161\u11ab", "한"),  # conjoining jamo -> NFC syllable
        ("아이폰\u200b15", "아이폰 15"),  # zero-width space -> space
        ("", ""),
        ("   ", ""),
        ("\u3000\u3000", ""),
        ("ΑΒΓ", "ΑΒΓ"),  # Greek is not Latin: case kept
        ("갤탭 S9", "갤탭 s9"),
    ],
)
def test_normalize_cases(raw, expected):
    assert normalize_query(raw) == expected


def test_normalize_is_idempotent_and_keeps_hangul():
    samples = [
        "남친룩 추천",
        "꾸안꾸 코디",
        "ＡＢＣ 가방",
        "  이케아스투바벤치 ",
        "😀 이모지",
        "<b>SELECT * FROM t</b>",
    ]
    for s in samples:
        once = normalize_query(s)
        assert normalize_query(once) == once
    assert normalize_query("😀 이모지") == "😀 이모지"
    assert normalize_query("<b>SELECT * FROM t</b>") == "<b>select * from t</b>"


def test_non_string_is_empty():
    assert normalize_query(None) == ""  # type: ignore[arg-type]
