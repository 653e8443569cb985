"""From text pairs to padded id tensors, batched by token count."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sentencepiece as spm
import torch

from model_export.corpus import Pair
from model_export.tokenizer import BOS, EOS, PAD
from service.placeholders import mask, mask_with


def mask_pair(source: str, target: str) -> tuple[str, str]:
    """Mask the source; the target reuses the source's sentinels."""
    masked = mask(source)
    return masked.text, mask_with(target, masked.placeholders)


@dataclass
class Example:
    src: list[int]  # source ids + EOS
    tgt: list[int]  # target ids (no BOS/EOS)


def encode_pairs(
    pairs: Sequence[Pair], sp: spm.SentencePieceProcessor, max_tokens: int
) -> list[Example]:
    """Mask and tokenize; pairs longer than ``max_tokens`` on either side are dropped."""
    examples = []
    for source, target in pairs:
        src_text, tgt_text = mask_pair(source, target)
        src, tgt = sp.encode(src_text), sp.encode(tgt_text)
        if len(src) < max_tokens and len(tgt) < max_tokens:
            examples.append(Example(src + [EOS], tgt))
    return examples


def pad(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


@dataclass
class Batch:
    src: torch.Tensor  # (B, S)
    src_lengths: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS + target
    tgt_out: torch.Tensor  # (B, T) target + EOS

    @property
    def num_target_tokens(self) -> int:
        return int((self.tgt_out != PAD).sum())


def make_batch(examples: Sequence[Example]) -> Batch:
    return Batch(
        src=pad([e.src for e in examples]),
        src_lengths=torch.tensor([len(e.src) for e in examples], dtype=torch.long),
        tgt_in=pad([[BOS, *e.tgt] for e in examples]),
        tgt_out=pad([[*e.tgt, EOS] for e in examples]),
    )


def token_batches(
    examples: Sequence[Example], batch_tokens: int, rng: random.Random | None
) -> Iterator[Batch]:
    """Batches of similar-length examples holding about ``batch_tokens`` padded tokens.

    Examples are sorted by length (after a shuffle when ``rng`` is given, so ties differ
    between epochs) and the batch order is shuffled.
    """
    order = list(range(len(examples)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (len(examples[i].src), len(examples[i].tgt)))
    groups: list[list[Example]] = []
    current: list[Example] = []
    width = 0
    for i in order:
        ex = examples[i]
        width = max(width, len(ex.src), len(ex.tgt) + 1)
        if current and width * (len(current) + 1) > batch_tokens:
            groups.append(current)
            current, width = [], max(len(ex.src), len(ex.tgt) + 1)
        current.append(ex)
    if current:
        groups.append(current)
    if rng is not None:
        rng.shuffle(groups)
    for group in groups:
        yield make_batch(group)
