"""Step-level (continuous) batching: sentences join and leave a running search between steps.

The :class:`Engine` holds every running sentence's encoder states once, in one padded store,
and its hypotheses in *groups*: sentences that share a beam size, a length penalty, a beam
rule and whether placeholders are constrained. One :meth:`Engine.step` runs the step model once over
the rows of all groups (greedy rows, beam-4 rows and beam-8 rows side by side; each row
gathers its sentence's encoder states inside the step graph), then advances each group with
the beam search of :mod:`service.decoding.beam`. A sentence leaves the moment it is done, and
:meth:`Engine.admit` adds newly encoded sentences between any two steps.

Nothing a sentence computes depends on the other rows (the step model is row-invariant and
padding is masked), so its result is the same whether it ran alone, in a static batch, or
joined a running one at step 17.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import count

import numpy as np

from service.decoding.beam import RULES, Group, Record
from service.decoding.constraints import penalty
from service.decoding.lexical import BONUS, Constraints
from service.decoding.types import EncodedBatch, Hypothesis, StepModel, StepOutput, TokenPenalty
from service.decoding.vocabulary import VocabularyBuilder

# beam, alpha, placeholders constrained, rule, attention, lexically constrained
GroupKey = tuple[int, float, bool, str, bool, bool]


@dataclass(frozen=True)
class Search:
    """How one sentence is searched. Greedy decoding is a beam of one (under the GNMT rule
    without a length penalty): the same choices as picking the most probable token every
    step."""

    max_len: int  # steps allowed, EOS included
    beam_size: int = 1
    n_best: int = 1
    alpha: float = 0.0  # length penalty exponent
    required: np.ndarray | None = None  # (P,) sentinel counts to keep; None: unconstrained
    rule: str = "gnmt"  # beam rule and length penalty: see service.decoding.beam.RULES
    # Ascending target ids it may produce (a shortlist, with everything a constraint forces);
    # None: the whole vocabulary. An engine takes either kind only.
    candidates: np.ndarray | None = None
    attention: bool = True  # keep each hypothesis' attention rows
    # Token sequences the output must hold (glossary terms): see service.decoding.lexical
    constraints: Constraints = ()

    @property
    def group(self) -> GroupKey:
        return (self.beam_size, self.alpha, self.required is not None, self.rule,
                self.attention, bool(self.constraints))

    def __post_init__(self) -> None:
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(f"n_best must be between 1 and beam_size ({self.beam_size}), "
                             f"got {self.n_best}")
        if self.rule not in RULES:
            raise ValueError(f"unknown beam rule {self.rule!r}: valid are {', '.join(RULES)}")


@dataclass
class Sentence:
    """A running sentence: its search settings, results so far and step history."""

    search: Search
    length: int  # source tokens: its attention rows are cut to this many columns
    finished: list[Hypothesis] = field(default_factory=list)
    track: list[tuple[Record, int]] = field(default_factory=list)  # per step: record, row

    def trace(self, slot: int) -> tuple[list[int], list[np.ndarray] | None]:
        """Tokens and attention rows (None if not kept) of the hypothesis in beam ``slot``
        after the last step."""
        tokens, rows = [], []
        for record, row in reversed(self.track):
            tokens.append(int(record.tokens[row, slot]))
            if record.attention is not None:
                rows.append(record.attention[row, slot, : self.length])
            slot = int(record.parents[row, slot])
        return tokens[::-1], rows[::-1] if self.search.attention else None

    @property
    def n_best(self) -> int:
        return self.search.n_best

    def results(self) -> list[Hypothesis]:
        return sorted(self.finished, key=lambda h: -h.score)[: self.search.n_best]


class Engine:
    """The running batch of a step decoder. Not thread-safe: one thread drives it.

    With ``shortlist``, every sentence brings its candidates and a step scores only their
    union, each row normalized over its own sentence's (:mod:`service.shortlist`)."""

    def __init__(self, model: StepModel, bos: int, eos: int,
                 sentinel_ids: np.ndarray | None = None, shortlist: bool = False,
                 max_step_cost: int = 0, continuation: np.ndarray | None = None) -> None:
        self.model, self.bos, self.eos = model, bos, eos
        # (V,) bool: the target pieces that go on with the word before them (lexical
        # constraints need it: a term's last word must end where the term does)
        self.continuation = continuation
        self.max_step_cost = max_step_cost  # rows x source positions per step; 0: no ceiling
        self.sentinel_ids = np.zeros(0, np.int64) if sentinel_ids is None else sentinel_ids
        # The penalized ids (EOS, sentinels) are columns of every restricted step.
        self.vocabulary = VocabularyBuilder(np.append(self.sentinel_ids, eos)) \
            if shortlist else None
        self.sentences: dict[int, Sentence] = {}
        self.groups: dict[GroupKey, Group] = {}
        self.store: EncodedBatch | None = None  # encoder states, one slot per sentence
        self.slot_of: dict[int, int] = {}  # sentence id -> store slot
        self._free: list[int] = []  # store slots of finished sentences, reused by newcomers
        self.steps = 0  # decoder calls so far
        self._ids = count()

    def __len__(self) -> int:
        return len(self.sentences)

    def admit(self, encoded: EncodedBatch, searches: Sequence[Search]) -> list[int]:
        """Add the sentences of ``encoded`` (one :class:`Search` each); returns their ids."""
        if len(searches) != encoded.mask.shape[0]:
            raise ValueError(f"{len(searches)} searches for {encoded.mask.shape[0]} sentences")
        if any((s.candidates is not None) != (self.vocabulary is not None) for s in searches):
            raise ValueError("a shortlist engine needs every sentence's candidates, and "
                             "only it takes them")
        ids = [next(self._ids) for _ in searches]
        slots = self._store(encoded)
        lengths = encoded.src_lengths
        for i, (sid, search) in enumerate(zip(ids, searches, strict=True)):
            self.sentences[sid] = Sentence(search, int(lengths[i]))
            self.slot_of[sid] = slots[i]
            if self.vocabulary is not None:
                self.vocabulary.add(self._candidates(sid))
        by_group: dict[GroupKey, list[int]] = {}
        for i, search in enumerate(searches):
            by_group.setdefault(search.group, []).append(i)
        for key, members in by_group.items():
            group = self.groups.get(key) or self.groups.setdefault(key, Group.empty(*key))
            required = None
            if key[2]:
                required = np.stack([searches[i].required for i in members])  # type: ignore[misc]
            group.add(np.array([ids[i] for i in members]), encoded.hidden[members],
                      np.array([searches[i].max_len for i in members]), self.bos, required,
                      [searches[i].constraints for i in members])
        return ids

    def drop(self, ids: Iterable[int]) -> None:
        """Remove sentences whose results nobody waits for any more."""
        gone = {i for i in ids if i in self.sentences}
        for group in self.groups.values():
            group.remove(gone)
        for sid in gone:
            self._leave(sid)
        self._compact()

    def step(self) -> dict[int, list[Hypothesis]]:
        """One decoder call over every running row (or those within ``max_step_cost``);
        returns the sentences it finished (their ``n_best`` hypotheses, best first), which
        leave the batch."""
        active = [g for g in self.groups.values() if g.size]
        if not active or self.store is None:
            return {}
        parts = self._within_ceiling(active, self.store.mask.shape[1])
        groups = [part for _, part in parts] if parts else active
        slots = np.concatenate([np.repeat([self.slot_of[int(s)] for s in g.ids], g.beam)
                                for g in groups]).astype(np.int64)
        vocab = None
        if self.vocabulary is not None:
            running = [int(s) for g in groups for s in g.ids]
            vocab = self.vocabulary.build(
                tuple(running), [self._candidates(s) for s in running],
                [g.beam for g in groups for _ in range(g.size)])
        attention = any(g.attention for g in groups)
        allowed = [g.allowed() for g in groups]  # what each lexical row may advance by
        step_penalty, lifted = self._penalty(groups, allowed)
        width = vocab.columns.shape[1] if vocab is not None else sys.maxsize
        # 2K per row (the search's candidates), plus the tokens lexical constraints lift,
        # plus one where EOS may turn into an owed placeholder (constraints.eos_as_owed)
        top_k = [min(2 * g.beam + lifted * (g.constraints is not None) + (g.missing is not None),
                     width) for g in groups]
        out = self.model.step(np.concatenate([g.last.reshape(-1) for g in groups]),
                              np.concatenate([g.hidden for g in groups]), self.store, slots,
                              max(top_k), step_penalty, vocab, attention)
        self.steps += 1
        done: dict[int, list[Hypothesis]] = {}
        at = 0
        for g, k, lexical in zip(groups, top_k, allowed, strict=True):
            rows = slice(at, at + g.rows)
            at += g.rows
            kept = out.attention[rows] if g.attention and out.attention is not None else None
            part = StepOutput(out.top_log_probs[rows, :k], out.top_ids[rows, :k],
                              out.hidden[rows], kept)
            for sid in g.advance(part, self.eos, self.sentinel_ids, self.sentences,
                                 self.continuation, lexical):
                done[sid] = self.sentences[sid].results()
                self._leave(sid)
        for group, stepped in parts:
            group.merge(stepped)
        if done:
            self._compact()
        return done

    def _within_ceiling(self, groups: list[Group], width: int) -> list[tuple[Group, Group]]:
        """Where stepping every row would cost more than ``max_step_cost`` (rows x the
        store's source positions), the sentences with the fewest steps so far (newcomers
        first, then the others in turn) that fit, split from their groups; else nothing.

        A short request that joins a batch of long ones then takes steps of bounded cost
        instead of waiting on full-batch steps, and the long ones share the rest in turn."""
        rows = sum(g.rows for g in groups)
        if not self.max_step_cost or rows * width <= self.max_step_cost:
            return []
        budget = max(self.max_step_cost // width, 1)
        order = sorted((int(g.steps[n]), int(g.ids[n]), i, n)
                       for i, g in enumerate(groups) for n in range(g.size))
        chosen = [np.zeros(g.size, dtype=bool) for g in groups]
        taken = 0
        for _, _, i, n in order:
            if taken and taken + groups[i].beam > budget:
                break
            chosen[i][n] = True
            taken += groups[i].beam
        return [(g, g.split(c)) for g, c in zip(groups, chosen, strict=True) if c.any()]

    def _candidates(self, sid: int) -> np.ndarray:
        candidates = self.sentences[sid].search.candidates
        assert candidates is not None  # admit lets no other search into a shortlist engine
        return candidates

    def _leave(self, sid: int) -> None:
        if self.vocabulary is not None:
            self.vocabulary.remove(self._candidates(sid))
        del self.sentences[sid]
        self._free.append(self.slot_of.pop(sid))

    def _penalty(self, groups: Sequence[Group], allowed: Sequence[list[set[int]] | None]
                 ) -> tuple[TokenPenalty, int]:
        """One penalty for all rows: the placeholder constraint where a group has one; where
        a group has lexical constraints, :data:`BONUS` on the tokens that advance them (which
        puts them in the row's top-k); zeros (which change no score) elsewhere. Also returns
        the most tokens a row lifts, which the top-k of lexically constrained rows must make
        room for."""
        rows = sum(g.rows for g in groups)
        if not any(g.missing is not None for g in groups) and not any(allowed):
            return TokenPenalty.none(rows), 0
        fixed = np.append(self.sentinel_ids, self.eos).astype(np.int64)
        lifted = np.array(sorted({t for sets in allowed if sets for row in sets for t in row}
                                 - set(fixed.tolist())), dtype=np.int64)
        values = np.zeros((rows, fixed.size + lifted.size), np.float32)
        column = {int(t): fixed.size + i for i, t in enumerate(lifted)}
        at = 0
        for g, sets in zip(groups, allowed, strict=True):
            part = values[at : at + g.rows]
            if g.missing is not None:
                part[:, : fixed.size] = penalty(g.missing.reshape(g.rows, -1),
                                                self.sentinel_ids, self.eos).values
            if sets is not None:
                for r, row in enumerate(sets):  # never a sentinel or EOS
                    part[r, [column[t] for t in row if t in column]] = BONUS
            at += g.rows
        room = max((len(row) for sets in allowed if sets for row in sets), default=0)
        return TokenPenalty(np.concatenate([fixed, lifted]), values), room

    def _store(self, encoded: EncodedBatch) -> list[int]:
        """Write ``encoded`` into free slots of the store (growing it by doubling, so an
        admission copies only the newcomers); returns their slots."""
        n, length = encoded.mask.shape
        if self.store is None:
            self.store = _resized(encoded, n, _round_up(length))
            self._free = list(range(n))
        B, S = self.store.mask.shape
        if length > S or len(self._free) < n:
            rows = max(B, len(self.slot_of) + n, 2 * B if len(self._free) < n else 0)
            self.store = _resized(self.store, rows, max(S, _round_up(length)))
            self._free += range(B, rows)
            S = self.store.mask.shape[1]
        slots = [self._free.pop() for _ in range(n)]
        store = self.store
        for name in ("outputs", "keys", "mask"):
            target, source = getattr(store, name), getattr(encoded, name)
            target[slots, :length] = source
            target[slots, length:] = 0
        store.hidden[slots] = encoded.hidden
        return slots

    def _compact(self) -> None:
        """Renumber the running sentences into a smaller store once at most a quarter of a
        large one is in use, or its padding is more than twice the longest running source."""
        if self.store is None:
            return
        if not self.slot_of:
            self.store, self._free = None, []
            return
        B, S = self.store.mask.shape
        longest = max(self.sentences[s].length for s in self.slot_of)
        if (B > 64 and 4 * len(self.slot_of) <= B) or 2 * _round_up(longest) < S:
            order = sorted(self.slot_of, key=self.slot_of.__getitem__)
            kept = self.store.take(np.array([self.slot_of[s] for s in order]))
            self.store = _resized(kept, len(order), _round_up(longest))
            self.slot_of = {s: i for i, s in enumerate(order)}
            self._free = []


def _round_up(length: int, multiple: int = 8) -> int:
    return -(-length // multiple) * multiple


def _resized(encoded: EncodedBatch, rows: int, S: int) -> EncodedBatch:
    """A copy with ``rows`` slots of ``S`` source positions (cut or zero-padded)."""
    B, width = encoded.mask.shape
    width = min(width, S)

    def fit(a: np.ndarray) -> np.ndarray:
        out = np.zeros((rows, S, *a.shape[2:]), a.dtype)
        out[:B, :width] = a[:, :width]
        return out

    hidden = np.zeros((rows, *encoded.hidden.shape[1:]), encoded.hidden.dtype)
    hidden[:B] = encoded.hidden
    return EncodedBatch(fit(encoded.outputs), hidden, fit(encoded.keys), fit(encoded.mask))


def run_to_end(engine: Engine, encoded: EncodedBatch, searches: Sequence[Search]
               ) -> list[list[Hypothesis]]:
    """Decode a static batch: admit everything, step until every sentence is done."""
    ids = engine.admit(encoded, searches)
    results: dict[int, list[Hypothesis]] = {}
    while len(results) < len(ids):
        results.update(engine.step())
    return [results[i] for i in ids]


def beam_search(
    model: StepModel,
    encoded: EncodedBatch,
    bos: int,
    eos: int,
    max_len: np.ndarray,
    beam_size: int = 4,
    n_best: int = 1,
    alpha: float = 0.6,
    sentinel_ids: np.ndarray | None = None,
    required: np.ndarray | None = None,
) -> list[list[Hypothesis]]:
    """Return the ``n_best`` hypotheses of every sentence of a static batch, best first.

    :param max_len: (B,) steps allowed per sentence, EOS included
    :param alpha: length penalty exponent; 0 ranks by raw log-probability
    :param sentinel_ids: (P,) the placeholder sentinels' ids; with ``required`` (B, P), how
        often each sentence's source has each: keep every one of them, invent none
    """
    searches = [Search(int(max_len[i]), beam_size, n_best, alpha,
                       None if required is None else required[i])
                for i in range(encoded.mask.shape[0])]
    return run_to_end(Engine(model, bos, eos, sentinel_ids), encoded, searches)


def greedy_search(model: StepModel, encoded: EncodedBatch, bos: int, eos: int,
                  max_len: np.ndarray, sentinel_ids: np.ndarray | None = None,
                  required: np.ndarray | None = None) -> list[Hypothesis]:
    """The most probable token at every step (a beam of one, no length penalty)."""
    return [h for [h] in beam_search(model, encoded, bos, eos, max_len, 1, 1, 0.0,
                                     sentinel_ids, required)]
