"""The one normalisation rule for Korean search queries (``querylearn.nfc-v1``).

Steps, in order:

1. Unicode NFC (conjoining jamo sequences compose into syllables; compatibility jamo such
   as ``ㅋㅋ`` are *not* touched: that would need NFKC, which we deliberately do not apply).
2. Full-width ASCII (U+FF01..U+FF5E) -> half-width ASCII; the ideographic space U+3000 -> space.
3. Control characters, zero-width spaces/joiners and the BOM -> space.
4. Latin letters (ASCII and Latin-1 / Latin Extended-A/B) lower-cased; other scripts unchanged.
5. Trim, and collapse every run of whitespace to one ASCII space.

A query that is empty after these steps is dropped by the dataset builders and counted in the
summary (``dropped_empty_query``).
"""

from __future__ import annotations

import unicodedata

RULE = "querylearn.nfc-v1"

_TABLE: dict[int, str] = {}
for _cp in range(0xFF01, 0xFF5F):
    _TABLE[_cp] = chr(_cp - 0xFEE0)
_TABLE[0x3000] = " "
for _cp in (0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x00A0, 0x180E):
    _TABLE[_cp] = " "
for _cp in list(range(0x00, 0x20)) + list(range(0x7F, 0xA0)):
    _TABLE[_cp] = " "
for _cp in range(0x41, 0x5B):
    _TABLE[_cp] = chr(_cp + 32)
for _cp in range(0xC0, 0x250):
    _ch = chr(_cp)
    if _ch.isupper() and unicodedata.name(_ch, "").startswith("LATIN"):
        _low = _ch.lower()
        if len(_low) == 1:
            _TABLE[_cp] = _low
# full-width capitals map to lower-case half-width directly
for _cp in range(0xFF21, 0xFF3B):
    _TABLE[_cp] = chr(_cp - 0xFEE0 + 32)


def normalize_query(text: str) -> str:
    """Normalise one query with rule ``querylearn.nfc-v1`` (see module docstring).

    >>> normalize_query("  캠핑　의자  ＬＥＤ ")
    '캠핑 의자 led'
    >>> normalize_query("ㅋㅋ")
    'ㅋㅋ'
    """
    if not isinstance(text, str):
        return ""
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_TABLE)
    return " ".join(text.split())
