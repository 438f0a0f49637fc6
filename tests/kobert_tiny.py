"""Build a tiny KoBERT-shaped model folder for tests and the benchmark (no network).

The folder mirrors ``skt/kobert-base-v1``: ``config.json`` + ``model.safetensors`` (a small
``BertModel`` saved with ``save_pretrained``), ``spiece.model`` (a sentencepiece model trained here on
generated Korean text with KoBERT's special-token layout [UNK]=0 [PAD]=1 [CLS]=2 [SEP]=3 [MASK]=4 and
the ``▁`` word-start convention), ``tokenizer_config.json`` and ``special_tokens_map.json``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = [
    "캠핑",
    "의자",
    "텐트",
    "이케아",
    "벤치",
    "한국어",
    "모델",
    "공유",
    "합니다",
    "영화",
    "추천",
    "노트북",
    "가방",
    "여름",
    "원피스",
    "겨울",
    "패딩",
    "운동화",
    "러닝",
    "커피",
    "머신",
    "무선",
    "이어폰",
    "조명",
    "책상",
    "서울",
    "맛집",
    "부산",
    "여행",
    "할인",
    "쿠폰",
    "배송",
    "무료",
    "아이폰",
    "케이스",
    "강아지",
    "사료",
    "고양이",
    "모래",
    "주방",
    "세제",
    "led",
    "usb",
    "mini",
    "pro",
    "2024",
    "1,000원",
    "ㅋㅋ",
]
PARTICLES = ["을", "를", "이", "가", "은", "는", "의", "에서", "으로", ""]


def corpus_lines(n: int = 3000, seed: int = 0) -> list[str]:
    """Deterministic Korean-ish sentences made of WORDS + particles."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(1, 5)
        lines.append(" ".join(rng.choice(WORDS) + rng.choice(PARTICLES) for _ in range(k)))
    return lines


def train_spiece(out_dir: Path, *, vocab_size: int = 400, seed: int = 0) -> Path:
    """Train ``spiece.model`` with KoBERT's special ids into ``out_dir``; return its path."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    text = out_dir / "corpus.txt"
    text.write_text("\n".join(corpus_lines(seed=seed)) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(out_dir / "spiece"),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        unk_piece="[UNK]",
        pad_id=1,
        pad_piece="[PAD]",
        bos_id=-1,
        eos_id=-1,
        control_symbols=["[CLS]", "[SEP]", "[MASK]"],
        num_threads=1,
        minloglevel=2,
    )
    text.unlink()
    (out_dir / "spiece.vocab").unlink()
    return out_dir / "spiece.model"


def build_tiny_kobert(
    out_dir: str | Path,
    *,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 400,
    max_positions: int = 64,
    seed: int = 0,
) -> Path:
    """Write the tiny KoBERT folder to ``out_dir`` and return it."""
    import sentencepiece as spm
    import torch
    from transformers import BertConfig, BertModel

    out = Path(out_dir)
    model_file = train_spiece(out, vocab_size=vocab_size, seed=seed)
    n_pieces = spm.SentencePieceProcessor(model_file=str(model_file)).GetPieceSize()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=n_pieces,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
        pad_token_id=1,
        type_vocab_size=2,
    )
    model = BertModel(config)
    with torch.no_grad():  # a non-trivial embedding table (N(0, 1)), so means are easy to tell apart
        model.get_input_embeddings().weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(seed))
    model.eval()
    model.save_pretrained(out)
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "do_lower_case": False,
                "remove_space": True,
                "keep_accents": False,
                "bos_token": "[CLS]",
                "eos_token": "[SEP]",
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            }
        ),
        encoding="utf-8",
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "[CLS]",
                "eos_token": "[SEP]",
                "unk_token": "[UNK]",
                "sep_token": "[SEP]",
                "pad_token": "[PAD]",
                "cls_token": "[CLS]",
                "mask_token": "[MASK]",
            }
        ),
        encoding="utf-8",
    )
    return out


_CACHE: dict[tuple, Path] = {}


def tiny_kobert_dir(**kwargs) -> Path:
    """The tiny KoBERT folder, built once per process in a temporary directory (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    key = tuple(sorted(kwargs.items()))
    if key not in _CACHE:
        root = Path(tempfile.mkdtemp(prefix="querylearn-tiny-kobert-"))
        atexit.register(shutil.rmtree, root, True)
        _CACHE[key] = build_tiny_kobert(root / "kobert", **kwargs)
    return _CACHE[key]


def build_tiny_hf_bert(out_dir: str | Path, *, hidden: int = 16, seed: int = 0) -> Path:
    """A tiny BERT with its own WordPiece tokenizer (characters of the toy queries) for the ``hf`` source."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("검색어0123456789캠핑의자"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "검색어", *chars, *("##" + c for c in chars)]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=False)
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    model = BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            max_position_embeddings=32,
        )
    )
    model.eval()
    model.save_pretrained(out)
    return out
