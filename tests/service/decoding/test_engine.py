"""The continuous-batching engine: a sentence's result does not depend on when it joined the
running batch, what it shared steps with, or who left."""

from dataclasses import replace

import numpy as np
import pytest

from service.decoding import Engine, Search, beam_search
from service.decoding.types import EncodedBatch, Hypothesis
from tests.service.decoding.toy import ToyModel

BOS, EOS = 0, 1
SENTINELS = np.array([10, 11])
LENGTHS = [4, 1, 6, 3, 5, 2, 7]


def searches() -> list[Search]:
    """Mixed options: greedy, beam 3 and 5, n-best, constrained and not, several limits."""
    return [Search(9, 1), Search(4, 3, 2, 0.8), Search(12, 5, 5, 0.8, np.array([2, 1])),
            Search(7, 1, 1, 0.0, np.array([0, 1])), Search(30, 3, 1, 0.8),
            Search(6, 5, 2, 0.8, np.array([0, 0])), Search(15, 3, 3, 0.8)]


def restricted(todo: list[Search], vocab: int, seed: int) -> list[Search]:
    """The same searches with a shortlist each (a random third of the vocabulary, EOS and
    the sentinels), half of them keeping no attention."""
    rng = np.random.default_rng(seed)
    return [replace(s, candidates=np.union1d(rng.choice(vocab, vocab // 3, replace=False),
                                             [EOS, *SENTINELS]), attention=bool(i % 2))
            for i, s in enumerate(todo)]


def alone(model: ToyModel, encoded: EncodedBatch, i: int, search: Search) -> list[Hypothesis]:
    """The sentence decoded by itself: the answer every schedule must reproduce."""
    engine = Engine(model, BOS, EOS, SENTINELS, search.candidates is not None)
    [sid] = engine.admit(encoded.take(np.array([i])), [search])
    while True:
        if (done := engine.step()):
            return done[sid]


def joining_at_random(engine: Engine, encoded: EncodedBatch, todo: list[Search], seed: int
                      ) -> list[list[Hypothesis]]:
    """Every sentence's results when they join a running batch in a random order, 0-2
    newcomers between steps."""
    rng = np.random.default_rng(seed)
    waiting, ids, results = list(rng.permutation(len(todo))), {}, {}
    while waiting or len(engine):
        for _ in range(int(rng.integers(0, 3))):
            if waiting:
                i = int(waiting.pop())
                [ids[i]] = engine.admit(encoded.take(np.array([i])), [todo[i]])
        results.update(engine.step())
    return [results[ids[i]] for i in range(len(todo))]


def assert_same(ours: list[Hypothesis], theirs: list[Hypothesis]) -> None:
    assert [h.tokens for h in ours] == [h.tokens for h in theirs]
    assert [h.score for h in ours] == [h.score for h in theirs]
    assert [h.ended for h in ours] == [h.ended for h in theirs]
    for a, b in zip(ours, theirs, strict=True):
        if a.attention is None or b.attention is None:
            assert a.attention is b.attention
        else:
            np.testing.assert_array_equal(a.attention, b.attention)


@pytest.mark.parametrize("ceiling", [0, 60], ids=["every-row", "ceiling"])
@pytest.mark.parametrize("shortlist", [False, True], ids=["full", "shortlist"])
@pytest.mark.parametrize("seed", [3, 15, 21])
def test_sentences_joining_a_running_batch_get_their_solo_results(seed: int, shortlist: bool,
                                                                   ceiling: int) -> None:
    model = ToyModel(vocab=30, seed=seed)
    encoded, todo = model.encode(LENGTHS), searches()
    if shortlist:  # each sentence normalized over its own candidates, whatever the union
        todo = restricted(todo, model.vocab, seed)
    expected = [alone(model, encoded, i, s) for i, s in enumerate(todo)]
    engine = Engine(model, BOS, EOS, SENTINELS, shortlist, max_step_cost=ceiling)
    results = joining_at_random(engine, encoded, todo, seed)
    for i, hyps in enumerate(expected):
        assert_same(results[i], hyps)
        assert len(hyps) == todo[i].n_best or not hyps[-1].ended
        allowed = todo[i].candidates
        for h in hyps:
            assert (h.attention is not None) == todo[i].attention
            if allowed is not None:
                assert set(h.tokens) <= set(allowed.tolist())


def test_under_a_ceiling_a_newcomer_steps_every_time_and_the_others_take_turns() -> None:
    model = ToyModel(vocab=30, seed=2)
    long = Search(40, 4, 1, 0.8)
    engine = Engine(model, BOS, EOS, SENTINELS, max_step_cost=8 * 8)  # 8 rows of 8 positions
    first = engine.admit(model.encode([7, 7, 7, 7]), [long] * 4)  # 16 rows: two steps' worth

    def steps_of(sid: int) -> int:
        group = next(g for g in engine.groups.values() if sid in g.ids)
        return int(group.steps[list(group.ids).index(sid)])

    for _ in range(6):
        engine.step()
        assert sum(g.rows for g in engine.groups.values()) == 16
    assert sorted(steps_of(s) for s in first) == [3, 3, 3, 3]  # in turn, two at a time
    [short] = engine.admit(model.encode([2]), [Search(3, 4, 1, 0.8)])
    for i in range(3):
        done = engine.step()
        if short in done:
            break
        assert steps_of(short) == i + 1  # first in line: fewest steps
    assert short in done


def test_a_shortlist_changes_only_what_falls_outside_it() -> None:
    """Every candidate kept: the full search's tokens, and its scores up to rounding.
    A shortlist leaving out the full search's words: other words, from the list."""
    model = ToyModel(vocab=30, seed=5)
    encoded = model.encode(LENGTHS)
    for i, search in enumerate(searches()):
        full = alone(model, encoded, i, search)
        everything = alone(model, encoded, i, replace(search, candidates=np.arange(30)))
        assert [h.tokens for h in everything] == [h.tokens for h in full]
        np.testing.assert_allclose([h.score for h in everything], [h.score for h in full],
                                   atol=1e-5)
        used = {t for h in full for t in h.tokens} - {EOS, *SENTINELS.tolist()}
        if not used:
            continue
        without = np.setdiff1d(np.arange(30), sorted(used))
        narrowed = alone(model, encoded, i, replace(search, candidates=without))
        assert all(set(h.tokens) <= set(without.tolist()) for h in narrowed)


def test_an_engine_takes_one_kind_of_search() -> None:
    model = ToyModel(vocab=30)
    with pytest.raises(ValueError, match="shortlist"):
        Engine(model, BOS, EOS, SENTINELS).admit(
            model.encode([3]), [Search(5, candidates=np.arange(30))])
    with pytest.raises(ValueError, match="shortlist"):
        Engine(model, BOS, EOS, SENTINELS, shortlist=True).admit(model.encode([3]), [Search(5)])


def test_one_step_serves_every_group() -> None:
    model = ToyModel(vocab=14, seed=7)
    engine = Engine(model, BOS, EOS, SENTINELS)
    engine.admit(model.encode(LENGTHS), searches())
    assert len(engine.groups) == 4  # greedy x2 (constrained or not), beam 3, beam 5
    assert sum(g.rows for g in engine.groups.values()) == 1 + 3 + 5 + 1 + 3 + 5 + 3
    engine.step()
    assert engine.steps == 1


def test_static_batch_equals_solo_and_dropped_sentences_leave_no_trace() -> None:
    model = ToyModel(vocab=14, seed=21)
    encoded, todo = model.encode(LENGTHS), searches()
    engine = Engine(model, BOS, EOS, SENTINELS)
    ids = engine.admit(encoded, todo)
    results = engine.step() | engine.step()
    engine.drop([ids[2], ids[4]])  # their clients went away
    assert ids[2] not in engine.sentences and engine.store is not None
    while len(engine):
        results.update(engine.step())
    assert ids[2] not in results and ids[4] not in results
    for i in (0, 1, 3, 5, 6):
        assert_same(results[ids[i]], alone(model, encoded, i, todo[i]))
    assert engine.store is None and not engine.slot_of  # nothing kept once all are done


def test_newcomers_reuse_the_slots_of_finished_sentences() -> None:
    model = ToyModel(vocab=14, seed=3)
    encoded = model.encode(LENGTHS)
    engine = Engine(model, BOS, EOS, SENTINELS)
    engine.admit(encoded, searches())
    assert engine.store is not None
    capacity = engine.store.mask.shape[0]
    while len(engine) == 7:
        engine.step()
    engine.admit(encoded.take(np.array([6])), [Search(15, 3)])  # into a freed slot
    assert engine.store.mask.shape[0] == capacity
    assert sorted(engine.slot_of.values()) == sorted(set(engine.slot_of.values()))


def test_static_beam_search_is_the_engine() -> None:
    model = ToyModel(vocab=14, seed=3)
    encoded, limits = model.encode(LENGTHS), np.array([9, 4, 12, 7, 30, 6, 15])
    found = beam_search(model, encoded, BOS, EOS, limits, beam_size=4, n_best=2, alpha=0.6)
    for i, hyps in enumerate(found):
        assert_same(hyps, alone(model, encoded, i, Search(int(limits[i]), 4, 2, 0.6)))


def test_n_best_larger_than_the_beam_is_refused() -> None:
    with pytest.raises(ValueError, match="n_best"):
        Search(10, beam_size=2, n_best=3)


def finish(engine: Engine, results: dict[int, list[Hypothesis]]) -> None:
    while len(engine):
        results |= engine.step()


def test_the_store_narrows_when_the_long_sources_leave() -> None:
    """Padding more than twice the longest running source: the store is rebuilt narrower,
    and the sentences still running get what they would have got alone."""
    model = ToyModel(vocab=14, seed=5)
    encoded = model.encode([20, 3, 3, 3, 20, 3])
    todo = [Search(2, 1), Search(9, 1), Search(12, 3, 2, 0.8), Search(9, 1),
            Search(2, 3), Search(30, 1)]
    engine = Engine(model, BOS, EOS, SENTINELS)
    ids = engine.admit(encoded, todo)
    assert engine.store is not None and engine.store.mask.shape == (6, 24)
    results = engine.step() | engine.step()  # the two long sources end at their limit of 2
    assert engine.store is not None and engine.store.mask.shape == (len(engine), 8)
    finish(engine, results)
    assert engine.store is None  # nothing running: nothing kept
    for i, search in enumerate(todo):
        assert_same(results[ids[i]], alone(model, encoded, i, search))


def test_a_large_store_a_quarter_used_is_renumbered() -> None:
    model = ToyModel(vocab=14, seed=5)
    encoded = model.encode([3] * 80)
    todo = [Search(40, 1) for _ in range(80)]
    engine = Engine(model, BOS, EOS, SENTINELS)
    ids = engine.admit(encoded, todo)
    engine.drop(ids[:59])  # 21 left of 80: more than a quarter, kept as it is
    assert engine.store is not None and engine.store.mask.shape == (80, 8)
    engine.drop(ids[59:60])  # 20 of 80: a quarter
    assert engine.store is not None and engine.store.mask.shape == (20, 8)
    assert sorted(engine.slot_of.values()) == list(range(20))
    results: dict[int, list[Hypothesis]] = {}
    finish(engine, results)
    for i in range(60, 80):
        assert_same(results[ids[i]], alone(model, encoded, i, todo[i]))
