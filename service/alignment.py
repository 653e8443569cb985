"""Word-level alignment from a subword attention matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

WORD_START = "▁"  # SentencePiece's whitespace marker


def group_words(pieces: Sequence[str], skip: frozenset[str] = frozenset({"</s>"})
                ) -> list[list[int]]:
    """Indices of the pieces of each word; a piece starting with ``▁`` starts a new word."""
    words: list[list[int]] = []
    for i, piece in enumerate(pieces):
        if piece in skip:
            continue
        if not words or piece.startswith(WORD_START):
            words.append([i])
        else:
            words[-1].append(i)
    return words


def word_text(pieces: Sequence[str], word: Sequence[int]) -> str:
    return "".join(pieces[i] for i in word).replace(WORD_START, " ").strip()


@dataclass(frozen=True)
class Link:
    source: int  # source word index
    target: int  # target word index
    source_word: str
    target_word: str
    weight: float  # attention mass of the target word on the source word


def align(source_pieces: Sequence[str], target_pieces: Sequence[str],
          attention: np.ndarray, known: Mapping[int, int] | None = None) -> list[Link]:
    """Link every target word to the source word it attends to most.

    A word's attention on another is the source-side sum over its pieces of the target-side
    mean over its pieces. :param attention: (T, S) rows for target pieces, columns for source.
    :param known: target piece -> source piece whose correspondence is known by construction
        (a glossary term's sentinel on both sides): its word links there, whatever the
        attention says.
    """
    src_words, tgt_words = group_words(source_pieces), group_words(target_pieces)
    if not src_words or not tgt_words:
        return []
    word_of = {i: w for w, pieces in enumerate(src_words) for i in pieces}
    links = []
    for t, tw in enumerate(tgt_words):
        mass = [float(attention[tw][:, sw].sum(axis=1).mean()) for sw in src_words]
        fixed = [word_of[known[i]] for i in tw if known and known.get(i) in word_of]
        s = fixed[0] if fixed else int(np.argmax(mass))
        links.append(Link(s, t, word_text(source_pieces, src_words[s]),
                          word_text(target_pieces, tw), round(mass[s], 4)))
    return links
