"""Batched beam search over a group of sentences, in numpy.

Every sentence keeps ``K`` live hypotheses; a group of N sentences has ``N * K`` rows. The
step graph returns each row's ``2K`` best tokens (their union holds the sentence's ``2K`` best
expansions), so numpy never handles a rows x vocabulary array. Tokens and attention are
kept per step with back-pointers and read back only for finished hypotheses, so no step
copies the history. A sentence leaves its group when it is done, so results never depend on
which other sentences share it. :mod:`service.decoding.engine` runs the groups.

Two rules decide what finishes and when a sentence is done (``RULES``):

- ``gnmt`` (the default, as fairseq): of the ``2K`` best expansions, an EOS among the first
  ``K`` finishes a hypothesis and the ``K`` best others stay live; done with ``K`` finished
  hypotheses. Score: log-probability / ((5 + n) / 6) ** alpha (Wu et al., 2016).
- ``opennmt`` (onmt_translate's ``BeamSearch``): the ``K`` best expansions are kept, those
  ending in EOS finish and leave their slot empty for one step; done as soon as the best
  expansion of a step is finished (and ``n_best`` are). Score: log-probability /
  (n + 1) ** alpha (its ``length_penalty avg``).

Both: n counts the generated tokens, EOS included; at the length limit every live
hypothesis ends unfinished.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from service.decoding import lexical
from service.decoding.constraints import emitted, eos_as_owed, owed_before_the_limit
from service.decoding.lexical import Constraints, Progress
from service.decoding.types import Hypothesis, StepOutput

RULES = ("gnmt", "opennmt")


def length_penalty(length: int, alpha: float, rule: str = "gnmt") -> float:
    """GNMT's ((5 + |Y|) / 6) ** alpha (Wu et al., 2016, sec. 7) or OpenNMT-py's average,
    (|Y| + 1) ** alpha (the +1: its length counts the start token)."""
    if rule == "opennmt":
        return float((length + 1.0) ** alpha)
    return float(((5.0 + length) / 6.0) ** alpha)


@dataclass(frozen=True)
class Record:
    """One step of a group: each slot's token, the slot it extends and its attention row.
    Every sentence keeps the records of its own steps (with its row in them), so nothing is
    copied when sentences join or leave, and a record is freed with its last sentence."""

    tokens: np.ndarray  # (N, K) int64
    parents: np.ndarray  # (N, K) int64
    attention: np.ndarray | None  # (N, K, S) float32, if the group keeps attention


class Traced(Protocol):
    """What :class:`Group` needs of a running sentence (``engine.Sentence``)."""

    length: int
    finished: list[Hypothesis]
    track: list[tuple[Record, int]]

    @property
    def n_best(self) -> int: ...

    def trace(self, slot: int) -> tuple[list[int], list[np.ndarray] | None]: ...


@dataclass
class Group:
    """The live hypotheses of N sentences that share a beam size K, a length penalty, a
    rule, whether placeholders are constrained, whether attention is kept and whether they
    have lexical constraints (glossary terms: :mod:`service.decoding.lexical`, which then
    chooses the live hypotheses instead of the rule); row ``n * K + k`` is sentence n's
    slot k."""

    beam: int
    alpha: float
    rule: str
    attention: bool
    ids: np.ndarray  # (N,) sentence ids
    scores: np.ndarray  # (N, K) cumulative log-probabilities (float64)
    last: np.ndarray  # (N, K) each hypothesis' last token
    hidden: np.ndarray  # (N * K, H)
    max_len: np.ndarray  # (N,) steps allowed, EOS included
    steps: np.ndarray  # (N,) steps taken
    missing: np.ndarray | None  # (N, K, P) sentinels each hypothesis still owes
    # With lexical constraints: each sentence's, and each hypothesis' progress through them
    constraints: list[Constraints] | None = None  # N
    progress: list[list[Progress]] | None = None  # N x K

    @staticmethod
    def empty(beam: int, alpha: float, constrained: bool, rule: str, attention: bool,
              lexical: bool = False) -> Group:
        none = np.zeros(0, np.int64)
        return Group(beam, alpha, rule, attention, none, np.zeros((0, beam)),
                     np.zeros((0, beam), np.int64), np.zeros((0, 0), np.float32), none, none,
                     np.zeros((0, beam, 0), np.int64) if constrained else None,
                     [] if lexical else None, [] if lexical else None)

    @property
    def size(self) -> int:
        return self.ids.size

    @property
    def rows(self) -> int:
        return self.ids.size * self.beam

    def add(self, ids: np.ndarray, hidden: np.ndarray, max_len: np.ndarray, bos: int,
            required: np.ndarray | None, constraints: Sequence[Constraints] = ()) -> None:
        """Start sentences: K copies of the initial state, only the first one expanded."""
        n, K = ids.size, self.beam
        scores = np.full((n, K), -np.inf)
        scores[:, 0] = 0.0
        self.ids = np.concatenate([self.ids, ids])
        self.scores = np.concatenate([self.scores, scores])
        self.last = np.concatenate([self.last, np.full((n, K), bos, np.int64)])
        fresh = np.repeat(hidden, K, axis=0)
        self.hidden = np.concatenate([self.hidden, fresh]) if self.hidden.size else fresh
        self.max_len = np.concatenate([self.max_len, max_len])
        self.steps = np.concatenate([self.steps, np.zeros(n, np.int64)])
        if self.missing is not None and required is not None:
            owed = np.repeat(required[:, None, :], K, axis=1)
            self.missing = np.concatenate([self.missing, owed]) if self.missing.size else owed
        if self.constraints is not None and self.progress is not None:
            self.constraints += constraints
            self.progress += [[Progress.start(c)] * K for c in constraints]

    def remove(self, ids: set[int]) -> None:
        if ids and self.size:
            self.keep(~np.isin(self.ids, list(ids)))

    def keep(self, keep: np.ndarray) -> None:
        """Only the sentences where ``keep`` (N,) is True."""
        self.ids, self.scores, self.last = self.ids[keep], self.scores[keep], self.last[keep]
        self.hidden = self.hidden[np.repeat(keep, self.beam)]
        self.max_len, self.steps = self.max_len[keep], self.steps[keep]
        if self.missing is not None:
            self.missing = self.missing[keep]
        if self.constraints is not None and self.progress is not None:
            self.constraints = [c for c, k in zip(self.constraints, keep, strict=True) if k]
            self.progress = [p for p, k in zip(self.progress, keep, strict=True) if k]

    def split(self, chosen: np.ndarray) -> Group:
        """Move the sentences where ``chosen`` (N,) is True into a new group with the same
        settings (to step them without the others); :meth:`merge` takes them back."""
        part = replace(self)
        part.keep(chosen)
        self.keep(~chosen)
        return part

    def merge(self, part: Group) -> None:
        self.ids = np.concatenate([self.ids, part.ids])
        self.scores = np.concatenate([self.scores, part.scores])
        self.last = np.concatenate([self.last, part.last])
        self.hidden = np.concatenate([self.hidden, part.hidden])
        self.max_len = np.concatenate([self.max_len, part.max_len])
        self.steps = np.concatenate([self.steps, part.steps])
        if self.missing is not None and part.missing is not None:
            self.missing = np.concatenate([self.missing, part.missing])
        if self.constraints is not None and part.constraints is not None:
            assert self.progress is not None and part.progress is not None
            self.constraints = self.constraints + part.constraints
            self.progress = self.progress + part.progress

    def allowed(self) -> list[set[int]] | None:
        """Per row, the tokens that advance a lexical constraint (None: no constraints)."""
        if self.constraints is None or self.progress is None:
            return None
        return [p.allowed(c) for c, row in zip(self.constraints, self.progress, strict=True)
                for p in row]

    def advance(self, out: StepOutput, eos: int, sentinel_ids: np.ndarray,
                sentences: Mapping[int, Traced], continuation: np.ndarray | None = None,
                allowed: list[set[int]] | None = None) -> list[int]:
        """Expand every live hypothesis by one token, finish those ending in EOS, keep K;
        returns the ids of the sentences now done, which leave the group. (``allowed``:
        :meth:`allowed` before the step, with lexical constraints.)"""
        N, K = self.scores.shape
        attention = None if out.attention is None else out.attention.reshape(N, K, -1)
        running = [sentences[int(i)] for i in self.ids]
        if self.missing is not None:  # rows bring one token more for this (see the engine)
            missing = self.missing.reshape(N * K, -1)
            log_probs, ids = eos_as_owed(out.top_log_probs, out.top_ids, missing,
                                         sentinel_ids, eos)
            log_probs, ids = owed_before_the_limit(
                log_probs, ids, missing, np.repeat(self.max_len - self.steps, K), sentinel_ids)
            out = replace(out, top_log_probs=log_probs, top_ids=ids)

        def finish(n: int, b: int, score: float) -> None:
            sentence = running[n]
            tokens, rows = sentence.trace(b)
            lp = length_penalty(int(self.steps[n]) + 1, self.alpha, self.rule)
            weights = None
            if attention is not None and rows is not None:
                weights = np.stack([*rows, attention[n, b, : sentence.length]])
            sentence.finished.append(Hypothesis(tokens, score / lp, weights, ended=True))

        n = np.arange(N)[:, None]
        if self.constraints is not None:
            assert continuation is not None and allowed is not None
            scores, beam, token, complete = self._choose_lexical(
                out, eos, finish, running, continuation, allowed)
        else:
            scores, beam, token, complete = self._choose(out, eos, finish, running)
        record = Record(token, beam, None if attention is None else attention[n, beam])
        for row, sentence in enumerate(running):
            sentence.track.append((record, row))
        if self.missing is not None:
            self.missing = self.missing[n, beam] - emitted(
                token.reshape(-1), sentinel_ids).reshape(N, K, -1)
        self.scores = scores
        self.last = token
        self.hidden = out.hidden.reshape(N, K, -1)[n, beam].reshape(N * K, -1)
        self.steps = self.steps + 1

        at_limit = ~complete & (self.steps >= self.max_len)
        for i in np.nonzero(at_limit)[0]:  # out of steps: live hypotheses end unfinished
            out_of_steps = running[i]
            lp = length_penalty(int(self.steps[i]), self.alpha, self.rule)
            slots = [int(slot) for slot in np.nonzero(np.isfinite(self.scores[i]))[0]]
            if self.progress is not None:  # those holding every term, if any do (Sockeye)
                slots = [b for b in slots if self.progress[i][b].complete] or slots
            for slot in slots:
                tokens, rows = out_of_steps.trace(slot)
                out_of_steps.finished.append(Hypothesis(
                    tokens, float(self.scores[i, slot] / lp),
                    None if rows is None else np.stack(rows), ended=False))
        done = complete | at_limit
        if not done.any():
            return []
        finished = [int(i) for i in self.ids[done]]
        self.keep(~done)
        return finished

    def _choose(self, out: StepOutput, eos: int, finish: Callable[[int, int, float], None],
                running: Sequence[Traced]) -> tuple[np.ndarray, ...]:
        """The rule's choice: (scores, slot extended, token) of the K live hypotheses of
        each sentence, and which sentences are complete; finished ones go to ``finish``."""
        N, K = self.scores.shape
        opennmt = self.rule == "opennmt"
        top_scores, top_beam, top_token = select(self.scores, out.top_log_probs, out.top_ids,
                                                 K if opennmt else 2 * K)
        # Only EOS among the K best candidates finishes a hypothesis.
        ends = (top_token[:, :K] == eos) & np.isfinite(top_scores[:, :K])
        for n, j in zip(*np.nonzero(ends), strict=True):
            finish(int(n), int(top_beam[n, j]), float(top_scores[n, j]))
        n = np.arange(N)[:, None]
        if opennmt:  # the K best stay, a finished one as an empty slot
            live = np.broadcast_to(np.arange(K), (N, K))
            scores = np.where(ends, -np.inf, top_scores)
            complete = ends[:, 0] & np.array([len(s.finished) >= s.n_best for s in running],
                                             dtype=bool)
        else:  # the first K that are not EOS
            live = np.argsort(top_token == eos, axis=1, kind="stable")[:, :K]
            scores = top_scores[n, live]
            complete = np.array([len(s.finished) >= K for s in running], dtype=bool)
        return scores, top_beam[n, live], top_token[n, live], complete

    def _choose_lexical(self, out: StepOutput, eos: int,
                        finish: Callable[[int, int, float], None], running: Sequence[Traced],
                        continuation: np.ndarray, allowed: list[set[int]]
                        ) -> tuple[np.ndarray, ...]:
        """Dynamic beam allocation (:func:`service.decoding.lexical.choose`) for every
        sentence; complete once K hypotheses (each holding every term) have finished, or
        ``n_best`` have and the best expansion of the step was one of them."""
        assert self.constraints is not None and self.progress is not None
        N, K = self.scores.shape
        log_probs, lifted = lexical.unlift(out.top_log_probs, out.top_ids, allowed)
        k = out.top_ids.shape[1]
        totals = self.scores[:, :, None] + log_probs.reshape(N, K, k)
        ids = out.top_ids.reshape(N, K, k)
        positions = lexical.offered(totals, ids, lifted.reshape(N, K, k))
        flat_totals, flat_ids = totals.reshape(N, -1), ids.reshape(N, -1)
        scores, beam = np.full((N, K), -np.inf), np.zeros((N, K), np.int64)
        token, complete = np.full((N, K), eos, np.int64), np.zeros(N, dtype=bool)
        for n in range(N):
            at = positions[n]
            ranked = list(zip(flat_totals[n, at].tolist(), (at // k).tolist(),
                              flat_ids[n, at].tolist(), strict=True))
            choice = lexical.choose(ranked, K, self.progress[n], self.constraints[n], eos,
                                    continuation)
            for b, score in choice.finished:
                finish(n, b, score)
            progress = [Progress.start(self.constraints[n])] * K
            for slot, (b, t, score, after) in enumerate(choice.live):
                beam[n, slot], token[n, slot], scores[n, slot], progress[slot] = (
                    b, t, score, after)
            self.progress[n] = progress
            done = running[n].finished
            complete[n] = len(done) >= K or (choice.best_finished
                                              and len(done) >= running[n].n_best)
        return scores, beam, token, complete


def select(scores: np.ndarray, top_log_probs: np.ndarray, top_ids: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best expansions of each sentence from its rows' candidates.

    Ranked as a search over every (beam, token) pair would rank them: by score, ties to the
    lower beam, then the lower token.

    :param scores: (N, K) live scores; top_log_probs / top_ids (N * K, k) per row
    :return: (scores, beam, token), each (N, k)
    """
    N, K = scores.shape
    if K == 1:  # one row per sentence: the step graph's order is already this ranking
        return (scores + top_log_probs[:, :k], np.zeros((N, min(k, top_ids.shape[1])), np.int64),
                top_ids[:, :k])
    candidates = (scores[:, :, None] + top_log_probs.reshape(N, K, -1)).reshape(N, -1)
    beam = np.repeat(np.arange(K), top_ids.shape[1])[None, :].repeat(N, axis=0)  # (N, K*k)
    token = top_ids.reshape(N, -1)
    order = np.lexsort((token, beam, -candidates), axis=1)[:, :k]  # (N, k)
    n = np.arange(N)[:, None]
    return candidates[n, order], beam[n, order], token[n, order]
