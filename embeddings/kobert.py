"""KoBERT: SKT's ``KoBERTTokenizer`` re-implemented on ``sentencepiece``, and the ``kobert`` source.

The ``kobert-tokenizer`` package subclasses transformers' XLNet slow tokenizer, which transformers 5
no longer ships. Its behaviour (Apache-2.0, SKTBrain/KoBERT ``kobert_hf``) is, step by step:

1. The literal special tokens ``[UNK] [PAD] [CLS] [SEP] [MASK]`` in the text are split out and map to
   their ids; every other chunk is tokenised on its own (steps 2-4).
2. Preprocessing (XLNet rules with ``remove_space=True, keep_accents=False, do_lower_case=False``):
   strip and collapse whitespace; replace two backquotes and two apostrophes with a double quote;
   Unicode NFKD and drop combining marks (this decomposes Hangul syllables into conjoining jamo, which
   sentencepiece's own NFKC normaliser composes back, and maps compatibility jamo ``ㅋ`` to ``ᄏ``).
3. ``sp.encode(text, out_type=str)`` (pieces carry the ``▁`` word-start mark).
4. A piece that ends in ``,`` after a digit (``▁1,``) is re-encoded without the comma and ``▁``, the
   comma becomes its own piece, and a ``▁`` the re-encoding added is dropped when the original
   piece had none.
5. Pieces map to ids with ``PieceToId`` (unknown -> ``[UNK]`` = 0); ``encode(add_special_tokens=True)``
   gives ``[CLS] ids [SEP]``.

Hub layout of ``skt/kobert-base-v1``: ``config.json``, the weights, ``spiece.model``,
``tokenizer_config.json``, ``special_tokens_map.json`` in one folder; a local folder with the same
files works offline (``--model /path/to/kobert``).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import lru_cache
from pathlib import Path

import numpy as np

from querylearn.artifacts import read_json
from querylearn.embeddings.base import TokenizedBatch
from querylearn.embeddings.hub import ResolvedModel, load_bert_model, resolve_model, weight_file
from querylearn.errors import QuerylearnError

SPIECE = "spiece.model"
SPIECE_UNDERLINE = "\u2581"
SPECIAL_IDS = {"[UNK]": 0, "[PAD]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
KOBERT_VOCAB_SIZE = 8002
TOKENIZER_FILES = (SPIECE, "tokenizer_config.json", "special_tokens_map.json")
HUB_PATTERNS = ["config.json", "model.safetensors", "pytorch_model.bin", *TOKENIZER_FILES]
_SPACE_RUN_RE = re.compile(r"[^\S\n]+")  # whitespace runs other than the query separator
_NEWLINE_EDGE_RE = re.compile(r" ?\n ?")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_IDS) + ")")


@lru_cache(maxsize=1)
def _char_tables() -> tuple[re.Pattern[str], np.ndarray, np.ndarray]:
    """Built once: a regex of every combining code point, and two bool lookup tables over all code
    points: ``combining`` (non-zero combining class) and ``odd_space`` (``str.isspace`` except
    ``" "`` and ``"\\n"``)."""
    combining = np.zeros(sys.maxunicode + 1, dtype=bool)
    odd_space = np.zeros(sys.maxunicode + 1, dtype=bool)
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.combining(ch):
            combining[cp] = True
        elif ch.isspace() and ch not in " \n":
            odd_space[cp] = True
    ranges: list[tuple[int, int]] = []
    for cp in np.flatnonzero(combining).tolist():
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    body = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges
    )
    return re.compile(f"[{body}]+"), combining, odd_space


def _combining_re() -> re.Pattern[str]:
    return _char_tables()[0]


def _codepoints(text: str) -> np.ndarray:  # [len(text)] uint32
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class KoBERTTokenizer:
    """KoBERT tokenisation on a sentencepiece model (see the module docstring for the rules)."""

    def __init__(
        self,
        model_file: str | Path,
        *,
        do_lower_case: bool = False,
        remove_space: bool = True,
        keep_accents: bool = False,
    ):
        import sentencepiece as spm

        self.model_file = Path(model_file)
        if not self.model_file.is_file():
            raise QuerylearnError(f"{self.model_file}: sentencepiece model not found")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.model_file))
        except (OSError, RuntimeError) as exc:
            raise QuerylearnError(f"{self.model_file}: not a sentencepiece model ({exc})") from None
        self.do_lower_case = do_lower_case
        self.remove_space = remove_space
        self.keep_accents = keep_accents
        # [CLS]/[SEP] ids are written into every sequence and [UNK] is sentencepiece's unknown id, so
        # these three must sit where KoBERT has them; [PAD]/[MASK] are looked up (padding is masked).
        n_pieces = self.sp.GetPieceSize()
        if self.sp.unk_id() != SPECIAL_IDS["[UNK]"]:
            raise QuerylearnError(
                f"{self.model_file}: the unknown piece has id {self.sp.unk_id()}, KoBERT's layout needs 0 "
                "([UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4); is this KoBERT's spiece.model?"
            )
        for piece in ("[CLS]", "[SEP]"):
            expected = SPECIAL_IDS[piece]
            found = self.sp.IdToPiece(expected) if expected < n_pieces else None
            if found != piece:
                raise QuerylearnError(
                    f"{self.model_file}: id {expected} is {found!r}, KoBERT's layout needs {piece} there "
                    "([UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4); is this KoBERT's spiece.model?"
                )
        self.unk_id = SPECIAL_IDS["[UNK]"]
        self.cls_id = SPECIAL_IDS["[CLS]"]
        self.sep_id = SPECIAL_IDS["[SEP]"]
        self.pad_id = self._lookup("[PAD]", fallback=SPECIAL_IDS["[PAD]"])
        self.mask_id = self._lookup("[MASK]", fallback=SPECIAL_IDS["[MASK]"])
        self.vocab_size = int(self.sp.GetPieceSize())
        self._buffers_ok: bool | None = None  # see _ids_flat

    def _lookup(self, piece: str, *, fallback: int) -> int:
        found = self.sp.PieceToId(piece)
        return found if self.sp.IdToPiece(found) == piece else fallback

    @classmethod
    def from_dir(cls, folder: str | Path) -> KoBERTTokenizer:
        """Load ``spiece.model`` from a KoBERT folder, honouring ``tokenizer_config.json`` flags."""
        folder = Path(folder)
        settings: dict = {}
        cfg = folder / "tokenizer_config.json"
        if cfg.is_file():
            data = read_json(cfg)
            settings = {
                k: bool(data[k]) for k in ("do_lower_case", "remove_space", "keep_accents") if k in data
            }
        return cls(folder / SPIECE, **settings)

    # -- the KoBERTTokenizer steps -------------------------------------------------------------
    def preprocess(self, text: str) -> str:
        """Step 2 (XLNet ``preprocess_text``)."""
        out = " ".join(text.strip().split()) if self.remove_space else text
        out = out.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            out = _combining_re().sub("", unicodedata.normalize("NFKD", out))
        if self.do_lower_case:
            out = out.lower()
        return out

    def _chunk_pieces(self, text: str) -> list[str]:
        """Steps 2-4 for a chunk without literal special tokens."""
        return self._digit_comma(self.sp.encode(self.preprocess(text), out_type=str))

    def _digit_comma(self, pieces: list[str], cache: dict[str, list[str]] | None = None) -> list[str]:
        """Step 4: a piece ending in ``,`` after a digit is re-encoded without the comma (and ``▁``),
        the comma becomes its own piece; ``cache`` maps a piece to its re-encoded pieces."""
        out: list[str] = []
        for piece in pieces:
            if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
                sub = cache.get(piece) if cache is not None else None
                if sub is None:
                    sub = self.sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
                    if sub and piece[0] != SPIECE_UNDERLINE and sub[0][0] == SPIECE_UNDERLINE:
                        sub = sub[1:] if len(sub[0]) == 1 else [sub[0][1:], *sub[1:]]
                    if cache is not None:
                        cache[piece] = sub
                out.extend(sub)
                out.append(piece[-1])
            else:
                out.append(piece)
        return out

    def tokenize(self, text: str) -> list[str]:
        """Pieces of ``text`` (special-token literals kept as themselves)."""
        pieces: list[str] = []
        for chunk in _SPECIAL_RE.split(text):
            if chunk in SPECIAL_IDS:
                pieces.append(chunk)
            elif chunk:
                pieces.extend(self._chunk_pieces(chunk))
        return pieces

    def convert_tokens_to_ids(self, pieces: list[str]) -> list[int]:
        return [self.sp.PieceToId(p) for p in pieces]

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        return [self.cls_id, *ids, self.sep_id] if add_special_tokens else ids

    def preprocess_many(self, texts: list[str]) -> list[str]:
        """``[preprocess(t) for t in texts]`` computed on one joined string (C-speed normalisation).

        Every step is local to a query, so joining with ``\\n`` (absent from the texts) and splitting
        afterwards gives the same strings as the per-query loop.
        """
        joined = "\n".join(texts)
        if joined.count("\n") != len(texts) - 1:  # a text holds a newline: do it one by one
            return [self.preprocess(t) for t in texts]
        _, combining, odd_space = _char_tables()
        # the collapse is skipped when every query is already stripped and single-spaced (normalised)
        if self.remove_space and (
            "  " in joined
            or " \n" in joined
            or "\n " in joined
            or joined.startswith(" ")
            or joined.endswith(" ")
            or odd_space[_codepoints(joined)].any()
        ):
            joined = _NEWLINE_EDGE_RE.sub("\n", _SPACE_RUN_RE.sub(" ", joined)).strip(" ")
        joined = joined.replace("``", '"').replace("''", '"')
        if not self.keep_accents:
            joined = unicodedata.normalize("NFKD", joined)
            if not joined.isascii():
                cps = _codepoints(joined)
                marks = combining[cps]
                if marks.any():
                    joined = cps[~marks].tobytes().decode("utf-32-le", "surrogatepass")
        if self.do_lower_case:
            joined = joined.lower()
        return joined.split("\n") if texts else []

    def encode_batch(self, texts: list[str]) -> TokenizedBatch:
        """Content ids of many queries (no [CLS]/[SEP]); identical to ``encode(t, add_special_tokens=False)``.

        Batched for every text: texts holding a literal special token are split into chunks (step 1),
        all chunks are preprocessed together (:meth:`preprocess_many`) and encoded by sentencepiece
        in one C++ call; only the chunks whose preprocessed text holds a ``,`` are encoded again as
        pieces for the digit-comma rule (step 4), its re-encodings cached per piece.
        """
        texts = list(texts)
        split = [i for i, t in enumerate(texts) if "[" in t]
        if not split:
            return self._encode_flat(self.preprocess_many(texts))
        # step 1 for the texts that may hold a special literal: (special piece | chunk index) per part
        chunks = list(texts)  # a text without "[" is its own chunk
        parts: dict[int, list[int | str]] = {}
        for i in split:
            items: list[int | str] = []
            for chunk in _SPECIAL_RE.split(texts[i]):
                if chunk in SPECIAL_IDS:
                    items.append(chunk)
                elif chunk:
                    items.append(len(chunks))
                    chunks.append(chunk)
            parts[i] = items
            chunks[i] = ""
        ids = self._encode_chunks(chunks)
        for i, items in parts.items():
            pieces = ([self.sp.PieceToId(it)] if isinstance(it, str) else ids[it] for it in items)
            ids[i] = [x for piece_ids in pieces for x in piece_ids]
        return TokenizedBatch.from_lists(ids[: len(texts)])

    def _encode_flat(self, pre: list[str]) -> TokenizedBatch:
        """Steps 3-5 for preprocessed texts without special literals, as flat arrays.

        sentencepiece's ids come as one C++ buffer per text (:meth:`_ids_flat`), so no Python int
        is made per id; the texts holding a ``,`` are then encoded again as pieces for the
        digit-comma rule (step 4) and their ids spliced in (the others keep their place).
        """
        flat, lengths = self._ids_flat(pre)  # [T], [N]
        comma = [i for i, text in enumerate(pre) if "," in text]
        if not comma:
            return TokenizedBatch.from_lengths(flat, lengths)
        fixed = self._digit_comma_ids([pre[i] for i in comma])
        keep = np.ones(len(pre), dtype=bool)
        keep[comma] = False
        new_lengths = lengths.copy()
        new_lengths[comma] = [len(ids) for ids in fixed]
        out = np.empty(int(new_lengths.sum()), dtype=np.int64)
        out[np.repeat(keep, new_lengths)] = flat[np.repeat(keep, lengths)]  # in order, both sides
        out[np.repeat(~keep, new_lengths)] = np.fromiter(
            (i for ids in fixed for i in ids), dtype=np.int64, count=int(new_lengths[comma].sum())
        )
        return TokenizedBatch.from_lengths(out, new_lengths)

    def _ids_flat(self, pre: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """sentencepiece ids of each text: (flat int64 [T], lengths int64 [N]).

        sentencepiece >= 0.2.1 can return each text's ids as a C++ int32 buffer; joining the buffers
        skips the Python list of ints per text that ``encode(out_type=int)`` builds (most of its
        time). That entry point is not public, so it is used only when it gives exactly the public
        call's ids on the first texts of this tokenizer's first batch, else the public call is used.
        """
        if not pre:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if self._buffers_ok is None:
            probe = pre[:256]
            try:
                got = self._buffer_ids(probe)
                want = self.sp.encode(probe, out_type=int)
                self._buffers_ok = got[1].tolist() == [len(ids) for ids in want] and got[0].tolist() == [
                    i for ids in want for i in ids
                ]
            except (AttributeError, TypeError, ValueError):
                self._buffers_ok = False
        if self._buffers_ok:
            return self._buffer_ids(pre)
        ids = self.sp.encode(pre, out_type=int)
        batch = TokenizedBatch.from_lists(ids)
        return batch.flat_ids, batch.lengths

    def _buffer_ids(self, pre: list[str]) -> tuple[np.ndarray, np.ndarray]:
        sp = self.sp
        # the positional order of sentencepiece's batch encoders, with SentencePieceProcessor's
        # defaults (what the public encode passes)
        buffers = sp._processor._EncodeAsBufferBatch(
            pre, sp._num_threads, None, sp._enable_sampling, sp._nbest_size, sp._alpha,
            sp._add_bos, sp._add_eos, sp._reverse,
        )  # fmt: skip
        nbytes = np.fromiter((memoryview(b).nbytes for b in buffers), dtype=np.int64, count=len(pre))
        flat = np.frombuffer(b"".join(buffers), dtype=np.int32).astype(np.int64)
        return flat, nbytes // 4

    def _encode_chunks(self, chunks: list[str]) -> list[list[int]]:
        """Steps 2-5 for chunks without special literals, batched: ids per chunk."""
        pre = self.preprocess_many(chunks)
        ids = self.sp.encode(pre, out_type=int)
        comma = [i for i, text in enumerate(pre) if "," in text]
        for i, fixed in zip(comma, self._digit_comma_ids([pre[i] for i in comma]), strict=True):
            ids[i] = fixed
        return ids

    def _digit_comma_ids(self, pre: list[str]) -> list[list[int]]:
        """Steps 3-5 for preprocessed texts that hold a ``,``: encoded as pieces, the digit-comma
        rule applied (its re-encodings cached per piece across the texts), then ids."""
        if not pre:
            return []
        cache: dict[str, list[str]] = {}
        return [
            self.convert_tokens_to_ids(self._digit_comma(pieces, cache))
            for pieces in self.sp.encode(pre, out_type=str)
        ]

    def piece_char_lengths(self) -> np.ndarray:
        lengths = [len(self.sp.IdToPiece(i).replace(SPIECE_UNDERLINE, "")) for i in range(self.vocab_size)]
        return np.asarray(lengths, dtype=np.int64)

    def describe(self) -> dict:
        return {
            "kind": "kobert-sentencepiece",
            "implementation": (
                "querylearn re-implementation of KoBERTTokenizer (XLNet preprocessing + sentencepiece)"
            ),
            "file": SPIECE,
            "vocab_size": self.vocab_size,
            "do_lower_case": self.do_lower_case,
            "remove_space": self.remove_space,
            "keep_accents": self.keep_accents,
            "special_ids": {
                "[UNK]": self.unk_id,
                "[PAD]": self.pad_id,
                "[CLS]": self.cls_id,
                "[SEP]": self.sep_id,
                "[MASK]": self.mask_id,
            },
            "sentencepiece_version": _sp_version(),
        }


def _sp_version() -> str:
    import sentencepiece

    return getattr(sentencepiece, "__version__", "unknown")


def resolve_kobert(name_or_path: str) -> ResolvedModel:
    return resolve_model(name_or_path, required=("config.json", SPIECE), patterns=HUB_PATTERNS, what="KoBERT")


def load_kobert(name_or_path: str, *, pooling: str, include_special: bool, batch_size: int, max_length: int):
    """The ``kobert`` source: KoBERTTokenizer on ``spiece.model`` + ``BertModel`` from the same folder."""
    from querylearn.embeddings.pooling import BertEmbedder

    resolved = resolve_kobert(name_or_path)
    tokenizer = KoBERTTokenizer.from_dir(resolved.path)
    model = load_bert_model(resolved)
    n_rows = model.get_input_embeddings().weight.shape[0]
    if n_rows < tokenizer.vocab_size:
        raise QuerylearnError(
            f"--model {name_or_path}: the model has {n_rows} word embeddings but spiece.model has "
            f"{tokenizer.vocab_size} pieces; tokenizer and weights do not belong together"
        )
    info = {
        "name_or_path": name_or_path,
        "resolved_path": str(resolved.path),
        "from_hub": resolved.from_hub,
        "revision": resolved.revision,
        "weights": weight_file(resolved.path),
        "sha256": resolved.file_hashes(("config.json", weight_file(resolved.path), *TOKENIZER_FILES)),
        "class": type(model).__name__,
    }
    return BertEmbedder(
        tokenizer,
        model,
        pooling=pooling,
        include_special=include_special,
        batch_size=batch_size,
        max_length=max_length,
        model_info=info,
    )
