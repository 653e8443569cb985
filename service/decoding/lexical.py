"""Lexically constrained beam search: dynamic beam allocation (Post & Vilar, 2018).

A sentence brings *constraints*, token sequences its output must contain (a glossary term's
target pieces, once per occurrence in the source). Every hypothesis carries a
:class:`Progress`: which constraints it has met, and the one it is in the middle of. At each
step a hypothesis may go on with its best tokens, with the next token of the constraint it
is in, or with the first token of any constraint it has not met; of all these expansions
the beam keeps the best of each *bank* (hypotheses that have met as many constraint tokens),
each bank getting an equal share of the ``K`` slots (a bank with too few candidates gives
its share to the next lower one). Only a hypothesis that has met every constraint ends: where
another would end, it emits the next token of a constraint instead (a term the model will not
place comes last, as an owed placeholder does), so every finished hypothesis holds every
term. As in Sockeye's ``lexical_constraints.py``, a hypothesis that breaks off a constraint
half-way has not met it.

The step model scores the tokens a hypothesis may take next even when they are not among its
best: the engine adds :data:`BONUS` to their log-probabilities in the step (which lifts them
into the row's top-k) and :func:`unlift` takes it off again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Constraints = tuple[tuple[int, ...], ...]  # a sentence's: each a token sequence
BONUS = 64.0  # lifts a token with log-probability above -64 over every unlifted one


@dataclass(frozen=True)
class Progress:
    """What one hypothesis has done of its sentence's constraints."""

    met: tuple[bool, ...]
    current: tuple[int, int] | None = None  # (constraint, tokens of it emitted so far)
    # The constraint the last token completed: met only if the next token does not go on
    # with its last word ("Müll" + "e" is not the term "Müll")
    just_met: int | None = None
    tokens: int = 0  # its bank: constraint tokens emitted (met ones whole, the current so far)

    @staticmethod
    def start(constraints: Constraints) -> Progress:
        return Progress((False,) * len(constraints))

    def allowed(self, constraints: Constraints) -> set[int]:
        """The tokens that advance a constraint: the next one of the constraint it is in,
        else the first of every constraint not met."""
        if self.current is not None:
            c, j = self.current
            return {constraints[c][j]}
        return {constraints[c][0] for c, met in enumerate(self.met) if not met}

    @property
    def complete(self) -> bool:
        return all(self.met)

    def advance(self, token: int, constraints: Constraints,
                continues_word: bool = False) -> Progress:
        """After emitting ``token`` (``continues_word``: a piece that goes on with the word
        before it)."""
        met, tokens = list(self.met), self.tokens
        if self.just_met is not None and continues_word:
            met[self.just_met] = False  # the word went on: not the term after all
            tokens -= len(constraints[self.just_met])
        if self.current is not None:
            c, j = self.current
            if token == constraints[c][j]:
                if j + 1 == len(constraints[c]):
                    met[c] = True
                    return Progress(tuple(met), None, c, tokens + 1)
                return Progress(tuple(met), (c, j + 1), None, tokens + 1)
            tokens -= j  # broken off: not met; the token may start another one
        for c, done in enumerate(met):
            if not done and constraints[c][0] == token:
                if len(constraints[c]) == 1:
                    met[c] = True
                    return Progress(tuple(met), None, c, tokens + 1)
                return Progress(tuple(met), (c, 1), None, tokens + 1)
        return Progress(tuple(met), tokens=tokens)


def bank_sizes(banks: int, beam: int, counts: Sequence[int]) -> list[int]:
    """Slots per bank: ``beam`` shared equally, the remainder to the highest bank; then,
    from the highest down, what a bank cannot fill goes to the next lower one (and from the
    lowest to the highest), as in Sockeye's ``get_bank_sizes``."""
    size, remainder = divmod(beam, banks)
    assigned = [size] * banks
    assigned[-1] += remainder
    for i in reversed(range(banks)):
        overfill = assigned[i] - counts[i]
        if overfill > 0:
            assigned[i] -= overfill
            assigned[(i - 1) % banks] += overfill
    return assigned


def unlift(top_log_probs: np.ndarray, top_ids: np.ndarray, allowed: Sequence[set[int]]
           ) -> tuple[np.ndarray, np.ndarray]:
    """The rows' log-probabilities without the :data:`BONUS` the step added to their
    allowed tokens, and where those are. :param top_log_probs: (R, k), top_ids (R, k),
    allowed: R sets"""
    width = max((len(row) for row in allowed), default=0)
    wanted = np.full((len(allowed), max(width, 1)), -1, np.int64)  # padded with -1
    for r, row in enumerate(allowed):
        wanted[r, : len(row)] = sorted(row)
    lifted = (top_ids[:, :, None] == wanted[:, None, :]).any(axis=2)
    return np.where(lifted, top_log_probs - np.float32(BONUS), top_log_probs), lifted


def offered(totals: np.ndarray, ids: np.ndarray, lifted: np.ndarray) -> list[np.ndarray]:
    """Each sentence's expansions worth considering, best first (ties to the lower slot,
    then the lower token): its ``2K`` best, each slot's best, and every one that advances a
    constraint of its slot (``lifted``).

    :param totals: (N, K, k) slot scores plus token log-probabilities; ids, lifted alike
    :return: per sentence, the flat (slot * k + j) positions of those expansions, in order
    """
    N, K, k = totals.shape
    flat = totals.reshape(N, K * k)
    slot = np.broadcast_to(np.repeat(np.arange(K), k), (N, K * k))
    order = np.lexsort((ids.reshape(N, -1), slot, -flat), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(K * k)[None, :], axis=1)
    best = rank.reshape(N, K, k) == rank.reshape(N, K, k).min(axis=2, keepdims=True)
    keep = (rank < 2 * K) | best.reshape(N, -1) | lifted.reshape(N, -1)
    keep &= np.isfinite(flat)
    return [o[m[o]] for o, m in zip(order, keep, strict=True)]


@dataclass(frozen=True)
class Choice:
    """One sentence's step: the hypotheses that finish (slot, score) and the live ones
    (slot they extend, token, score, progress), at most ``K``, best first."""

    finished: list[tuple[int, float]]
    live: list[tuple[int, int, float, Progress]]
    best_finished: bool  # the best expansion of the step ended the sentence


def choose(ranked: Sequence[tuple[float, int, int]], K: int, progress: Sequence[Progress],
           constraints: Constraints, eos: int, continuation: np.ndarray) -> Choice:
    """Dynamic beam allocation for one sentence of ``K`` slots.

    :param ranked: the expansions :func:`offered` keeps, best first: (score, slot, token)
    :param continuation: (V,) bool, the pieces that go on with the word before them
    """
    if any(token == eos and not progress[b].complete for _, b, token in ranked):
        ranked = _eos_as_owed(ranked, progress, constraints, eos)
    # EOS among the K best finishes a hypothesis (one that met every constraint); the
    # others compete for the K live slots, by bank
    finished = [(b, score) for score, b, token in ranked[:K] if token == eos]
    # A term's word ends where the term does: going on with it ("comparaison" + "s") would
    # take the term back, and a term owed at the end would come again and again (unless
    # nothing else is offered: the sentence keeps its beam)
    going_on = [token != eos and progress[b].just_met is not None and bool(continuation[token])
                for _, b, token in ranked]
    if all(on for on, (_, _, token) in zip(going_on, ranked, strict=True) if token != eos):
        going_on = [False] * len(ranked)
    live = []
    for (score, b, token), on in zip(ranked, going_on, strict=True):
        if token != eos and not on:
            after = progress[b].advance(token, constraints, bool(continuation[token]))
            live.append((b, token, score, after, after.tokens))
    banks = sum(len(c) for c in constraints) + 1
    counts = [0] * banks
    for *_, bank in live:
        counts[bank] += 1
    room = bank_sizes(banks, K, counts)
    kept = []
    for b, token, score, after, bank in live:
        if room[bank] > 0:
            room[bank] -= 1
            kept.append((b, token, score, after))
    return Choice(finished, kept[:K], bool(ranked) and ranked[0][2] == eos)


def _eos_as_owed(ranked: Sequence[tuple[float, int, int]], progress: Sequence[Progress],
                 constraints: Constraints, eos: int) -> list[tuple[float, int, int]]:
    """Where a hypothesis that has not met every constraint would end, it takes the tokens
    that advance one instead, with EOS's score if that is better: a term the model will not
    place comes last, as an owed placeholder does, instead of rambling to the length limit."""
    scores = {(b, token): score for score, b, token in ranked}
    for score, b, token in ranked:
        if token == eos and not progress[b].complete:
            del scores[(b, token)]
            for owed in progress[b].allowed(constraints):
                if score > scores.get((b, owed), -np.inf):
                    scores[(b, owed)] = score
    return sorted(((score, b, token) for (b, token), score in scores.items()),
                  key=lambda e: (-e[0], e[1], e[2]))
