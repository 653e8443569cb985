"""The target vocabulary of one step when a shortlist restricts it (see
:mod:`service.shortlist`): the union of the running sentences' candidates, and each row's own
candidates packed to the left, which is how the restricted step graph reads them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Packed rows are padded to a multiple of this (and past their longest), so that a row's
# values are reduced in the same blocks whatever the longest row of the batch is.
BLOCK = 128


@dataclass(frozen=True)
class Vocabulary:
    ids: np.ndarray  # (C,) int64 ascending: the union
    columns: np.ndarray  # (R, W) int64: each row's candidates as columns, ascending; C pads
    penalized: np.ndarray  # (P,) int64: the tokens penalty_columns locates
    penalty_columns: np.ndarray  # (R, P) int64: their packed positions (W - 1 if absent)
    set_columns: np.ndarray  # (N, W): ``columns`` once per sentence (candidate set)
    rows: np.ndarray  # (N,) rows of each sentence (columns repeats set_columns so)

    @staticmethod
    def build(ids: np.ndarray, own: Sequence[np.ndarray], rows: Sequence[int],
              penalized: np.ndarray) -> Vocabulary:
        """``own``: each sentence's candidates (ascending, all in ``ids``), ``rows`` of it.
        Runs before every step whose sentences changed: a few vectorized passes, no (R, C)
        array."""
        flat = np.concatenate(own)
        lengths = np.array([c.size for c in own])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        sentence = np.repeat(np.arange(len(own)), lengths)
        width = -(-(int(lengths.max()) + 1) // BLOCK) * BLOCK  # at least one padding column
        column_of = np.zeros(int(ids[-1]) + 1 if ids.size else 1, dtype=np.int64)
        column_of[ids] = np.arange(ids.size)
        columns = np.full((len(own), width), ids.size, dtype=np.int64)
        position = np.arange(flat.size) - np.repeat(starts, lengths)  # within its row
        columns[sentence, position] = column_of[flat]
        repeat = np.asarray(rows)
        positions = _packed(columns, column_of[penalized], ids.size)  # all in the union
        return Vocabulary(ids, np.repeat(columns, repeat, axis=0), penalized,
                          np.repeat(positions, repeat, axis=0), columns, repeat)

    @staticmethod
    def of(candidate_sets: list[np.ndarray], penalized: np.ndarray | None = None
           ) -> Vocabulary:
        """One row per candidate set (ascending ids each)."""
        extra = np.zeros(0, np.int64) if penalized is None else penalized
        ids = np.unique(np.concatenate([*candidate_sets, extra]))
        return Vocabulary.build(ids, candidate_sets, [1] * len(candidate_sets), extra)

    @property
    def mask(self) -> np.ndarray:
        """(R, C) bool: True where the column is a candidate of the row's sentence."""
        R = self.columns.shape[0]
        mask = np.zeros((R, self.ids.size + 1), dtype=bool)
        mask[np.arange(R)[:, None], self.columns] = True
        return mask[:, :-1]

    def positions(self, token_ids: np.ndarray) -> np.ndarray:
        """Columns of ``token_ids`` in the union (each must be in it)."""
        at = np.searchsorted(self.ids, token_ids)
        if at.size and (at.max() >= self.ids.size or (self.ids[at] != token_ids).any()):
            raise ValueError("a penalized token is not among the step's candidates")
        return at.astype(np.int64)

    def penalty_columns_of(self, token_ids: np.ndarray) -> np.ndarray:
        """(R, P) packed positions of the penalized ``token_ids`` (the engine's penalty:
        sentinels then EOS, as :attr:`penalized`, then any tokens lexical constraints lift),
        or (R, 0) without a penalty."""
        if not token_ids.size:
            return np.zeros((self.columns.shape[0], 0), np.int64)
        P = self.penalized.size
        if not np.array_equal(token_ids[:P], self.penalized):
            raise ValueError("the step penalizes other tokens than its vocabulary located")
        if token_ids.size == P:
            return self.penalty_columns
        return np.concatenate([self.penalty_columns, self.locate(token_ids[P:])], axis=1)

    def locate(self, token_ids: np.ndarray) -> np.ndarray:
        """(R, T) where each token sits in each row's packed candidates (W - 1, a padding
        column, where the row's sentence does not have it)."""
        where = _packed(self.set_columns, self.positions(token_ids), self.ids.size)
        return np.repeat(where, self.rows, axis=0)

    def restrict(self, log_probs: np.ndarray) -> np.ndarray:
        """Full-vocabulary log-probabilities (R, V) -> (R, C), each row renormalized over its
        own columns (the others -inf), in float64 (the numpy reference of the graph)."""
        scores = np.where(self.mask, log_probs[:, self.ids].astype(np.float64), -np.inf)
        top = scores.max(axis=1, keepdims=True)
        norm = top + np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
        return (scores - norm).astype(np.float32)


def _packed(set_columns: np.ndarray, union: np.ndarray, C: int) -> np.ndarray:
    """(N, T): where each of the union columns ``union`` (T,) sits in each set's packed
    candidates ``set_columns`` (N, W; ascending, padded with ``C``), W - 1 (a padding
    column) where the set lacks it. The sets offset by n * (C + 1) make one sorted array, so
    one search finds every (set, token)."""
    N, W = set_columns.shape
    offset = np.arange(N, dtype=np.int64)[:, None] * (C + 1)
    flat = (set_columns + offset).ravel()
    wanted = union[None, :] + offset
    at = np.minimum(np.searchsorted(flat, wanted), flat.size - 1)
    found = flat[at] == wanted
    return np.where(found, at - np.arange(N)[:, None] * W, W - 1).astype(np.int64)


class VocabularyBuilder:
    """Builds the step vocabulary of a changing set of sentences: a count per target id
    gives the union in O(V), and the rows are rebuilt only when the sentences change."""

    def __init__(self, extra: np.ndarray) -> None:
        # Ids every step scores, in the order the engine penalizes them (sentinels, EOS).
        self.extra = np.asarray(extra, dtype=np.int64)
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
        vocabulary = Vocabulary.build(np.flatnonzero(present).astype(np.int64), candidate_sets,
                                      rows_per_set, self.extra)
        self._cached = (key, vocabulary)
        return vocabulary
