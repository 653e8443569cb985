"""Joint SentencePiece vocabulary over masked source and target text."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path

import sentencepiece as spm

from service.placeholders import SENTINELS

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = 0, 1, 2, 3


def train_tokenizer(texts: Sequence[str], out_path: Path, vocab_size: int) -> None:
    """Train a unigram SentencePiece model on masked ``texts`` and write it to ``out_path``.

    Sentinels are user-defined symbols, so ``<ph0>`` is always exactly one token.
    """
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=PAD,
        unk_id=UNK,
        bos_id=BOS,
        eos_id=EOS,
        user_defined_symbols=list(SENTINELS),
        byte_fallback=True,  # unseen characters (emoji, CJK) still round-trip
        hard_vocab_limit=False,  # a small corpus may not fill the vocabulary
        num_threads=2,
        minloglevel=2,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(model.getvalue())
    log.info("tokenizer: %d pieces written to %s", vocab_size, out_path)


def load_tokenizer(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path))
