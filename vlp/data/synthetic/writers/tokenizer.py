"""Training and writing the WordPiece tokenizer of the shapes world (``tokenizer/``).

The tokenizer is trained by :func:`vlp.data.tokenizer.train_wordpiece` on every text the other writers
wrote, in their order (captions, VQA, GQA, NLVR2, SNLI-VE), so that each word of the world has tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TokenizerSummary:
    """The tokenizer written under ``folder``: its vocabulary size and how many texts it was trained on."""

    folder: Path
    vocab_size: int
    texts: int


def write_tokenizer(out: Path, texts: list[str], vocab_size: int) -> TokenizerSummary:
    from vlp.data.tokenizer import train_wordpiece  # lazily: it loads the tokenizers library

    folder = out / "tokenizer"
    tokenizer = train_wordpiece(texts, folder, vocab_size=vocab_size)
    return TokenizerSummary(folder, len(tokenizer), len(texts))
