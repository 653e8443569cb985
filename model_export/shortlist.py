"""Lexical shortlist: the target pieces each source piece may translate to.

Built at export from the tokenized training pairs, as Marian's lexical shortlists are built
from a word-alignment lexicon: IBM Model 1 (Brown et al., 1993), trained by EM with a NULL
source word, gives t(target | source) for every piece pair seen together; each source piece
keeps its ``top`` most probable target pieces. A sentence's candidates are then the union of
its source pieces' lists and the ``frequent`` most frequent target pieces (plus what must
always be reachable: EOS and the placeholder sentinels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shortlist:
    candidates: np.ndarray  # (V, top) int32 target ids per source id, best first; -1 pads
    always: np.ndarray  # (M,) int32 target ids every sentence may produce

    def for_source(self, source_ids: Sequence[int]) -> np.ndarray:
        """The sorted target ids a sentence with these source ids may produce."""
        listed = self.candidates[np.asarray(source_ids, dtype=np.int64)].ravel()
        return np.union1d(listed[listed >= 0], self.always).astype(np.int32)


def ibm1(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], vocab_size: int,
         iterations: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IBM Model 1 translation probabilities of the (source, target) piece pairs seen together.

    Vectorized EM over every (source position, target position) pair of every sentence; the
    source side gets a NULL word (id ``vocab_size``) that absorbs function pieces.

    :return: (source ids, target ids, t(target | source)) of the observed pairs
    """
    null = vocab_size
    src_of, tgt_of, occurrence = [], [], []  # one entry per (source token, target token)
    at = 0
    for source, target in pairs:
        if not target:
            continue
        s = np.append(np.asarray(source, dtype=np.int64), null)
        t = np.asarray(target, dtype=np.int64)
        src_of.append(np.tile(s, len(t)))
        tgt_of.append(np.repeat(t, len(s)))
        occurrence.append(np.repeat(np.arange(at, at + len(t)), len(s)))
        at += len(t)
    src = np.concatenate(src_of)
    tgt = np.concatenate(tgt_of)
    occ = np.concatenate(occurrence)
    keys, key_of = np.unique(src * (vocab_size + 1) + tgt, return_inverse=True)
    key_src, key_tgt = keys // (vocab_size + 1), keys % (vocab_size + 1)
    prob = np.ones(len(keys))  # uniform start: t(f | e) equal for every f seen with e
    prob /= np.bincount(key_src, prob, minlength=vocab_size + 1)[key_src]
    for iteration in range(iterations):
        p = prob[key_of]
        posterior = p / np.bincount(occ, p, minlength=at)[occ]  # over each target token's sources
        counts = np.bincount(key_of, posterior, minlength=len(keys))
        prob = counts / np.bincount(key_src, counts, minlength=vocab_size + 1)[key_src]
        log.info("IBM model 1 iteration %d: %d piece pairs", iteration + 1, len(keys))
    real = key_src < null
    return key_src[real], key_tgt[real], prob[real]


def build_shortlist(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], vocab_size: int,
                    always: Sequence[int], top: int = 50, frequent: int = 500,
                    iterations: int = 5) -> Shortlist:
    """Each source piece's ``top`` target pieces by IBM Model 1 probability; the ``frequent``
    most frequent target pieces and ``always`` (EOS, sentinels) for every sentence."""
    src, tgt, prob = ibm1(pairs, vocab_size, iterations)
    order = np.lexsort((-prob, src))  # by source, most probable first
    src, tgt = src[order], tgt[order]
    first = np.searchsorted(src, src, side="left")  # start of each source's run
    rank = np.arange(len(src)) - first
    keep = rank < top
    candidates = np.full((vocab_size, top), -1, dtype=np.int32)
    candidates[src[keep], rank[keep]] = tgt[keep]
    counts = np.bincount(np.concatenate([np.asarray(t, dtype=np.int64) for _, t in pairs]),
                         minlength=vocab_size)
    common = np.argsort(-counts, kind="stable")[:frequent]
    common = common[counts[common] > 0]
    fixed = np.union1d(common, np.asarray(always, dtype=np.int64)).astype(np.int32)
    return Shortlist(candidates, fixed)


def coverage(shortlist: Shortlist, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]
             ) -> tuple[float, float]:
    """(share of reference target tokens among their sentence's candidates, mean number of
    candidates per sentence): what a shortlist loses, and what it saves."""
    covered = total = size = 0
    for source, target in pairs:
        allowed = shortlist.for_source(source)
        covered += int(np.isin(np.asarray(target), allowed).sum())
        total += len(target)
        size += len(allowed)
    return covered / max(total, 1), size / max(len(pairs), 1)
