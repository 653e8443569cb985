"""The target vocabulary of one step when a shortlist restricts it (see
:mod:`service.shortlist`): the union of the running sentences' candidates, and which of its
columns each row may use."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vocabulary:
    ids: np.ndarray  # (C,) int64 ascending
    mask: np.ndarray  # (R, C) bool: True where the column is a candidate of the row's sentence

    @staticmethod
    def of(candidate_sets: list[np.ndarray]) -> Vocabulary:
        """One row per candidate set (ascending ids each)."""
        ids = np.unique(np.concatenate(candidate_sets))
        mask = np.zeros((len(candidate_sets), ids.size), dtype=bool)
        for row, own in enumerate(candidate_sets):
            mask[row, np.searchsorted(ids, own)] = True
        return Vocabulary(ids, mask)

    def positions(self, token_ids: np.ndarray) -> np.ndarray:
        """Columns of ``token_ids``, each of which must be in ``ids``."""
        at = np.searchsorted(self.ids, token_ids)
        if at.size and (at.max() >= self.ids.size or (self.ids[at] != token_ids).any()):
            raise ValueError("a penalized token is not among the step's candidates")
        return at.astype(np.int64)

    def restrict(self, log_probs: np.ndarray) -> np.ndarray:
        """Full-vocabulary log-probabilities (R, V) -> (R, C), each row renormalized over its
        own columns (the others -inf), in float64 as the restricted step graph does."""
        scores = np.where(self.mask, log_probs[:, self.ids].astype(np.float64), -np.inf)
        top = scores.max(axis=1, keepdims=True)
        norm = top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
        return (scores - norm).astype(np.float32)


class VocabularyBuilder:
    """Builds the step vocabulary of a changing set of sentences: a count per target id
    gives the union in O(V), and masks are rebuilt only when the rows change."""

    def __init__(self, extra: np.ndarray) -> None:
        self.extra = np.asarray(extra, dtype=np.int64)  # ids every step scores (EOS, sentinels)
        self.counts: np.ndarray | None = None
        self._cached: tuple[tuple[int, ...], Vocabulary] | None = None

    def add(self, candidates: np.ndarray) -> None:
        if self.counts is None or candidates.max(initial=0) >= self.counts.size:
            size = max(int(candidates.max(initial=0)), int(self.extra.max(initial=0))) + 1
            grown = np.zeros(max(size, 0 if self.counts is None else self.counts.size), np.int32)
            if self.counts is not None:
                grown[: self.counts.size] = self.counts
            self.counts = grown
        self.counts[candidates] += 1
        self._cached = None

    def remove(self, candidates: np.ndarray) -> None:
        assert self.counts is not None
        self.counts[candidates] -= 1
        self._cached = None

    def build(self, key: tuple[int, ...], candidate_sets: Sequence[np.ndarray],
              rows_per_set: Sequence[int]) -> Vocabulary:
        """The vocabulary for sentences (``key``: their ids in row order) with these
        candidates and rows each."""
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        assert self.counts is not None
        present = self.counts > 0
        present[self.extra] = True
        ids = np.flatnonzero(present).astype(np.int64)
        column = np.full(present.size, -1, np.int64)
        column[ids] = np.arange(ids.size)
        lengths = np.array([c.size for c in candidate_sets])
        own = np.zeros((len(candidate_sets), ids.size), dtype=bool)
        own[np.repeat(np.arange(len(candidate_sets)), lengths),
            column[np.concatenate(candidate_sets)]] = True
        vocabulary = Vocabulary(ids, np.repeat(own, rows_per_set, axis=0))
        self._cached = (key, vocabulary)
        return vocabulary
