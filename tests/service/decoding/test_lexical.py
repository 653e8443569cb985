"""Lexically constrained beam search (dynamic beam allocation): every finished hypothesis
holds every constraint as whole words, and a sentence's result does not depend on what
shares its steps."""

from dataclasses import replace

import numpy as np
import pytest

from service.decoding import Engine, Search, Vocabulary
from service.decoding.lexical import Progress, bank_sizes, choose
from service.decoding.types import EncodedBatch, Hypothesis
from tests.service.decoding.test_engine import assert_same, joining_at_random
from tests.service.decoding.toy import ToyModel

BOS, EOS = 0, 1
SENTINELS = np.array([10, 11])
VOCAB = 30
CONTINUATION = np.arange(VOCAB) >= 24  # pieces that go on with the word before them
LENGTHS = [4, 6, 3, 5, 7, 2]


def searches() -> list[Search]:
    """Constrained and not, greedy and beams, a multi-token term twice, with placeholders."""
    return [Search(12, 4, 2, 0.6, constraints=((5, 6),)),
            Search(14, 1, constraints=((7,), (7,))),
            Search(10, 3, 1, 0.6),
            Search(16, 5, 3, 0.6, np.array([1, 0]), constraints=((12, 13, 14), (20,))),
            Search(9, 4, 1, 0.6),
            Search(18, 3, 1, 0.6, constraints=((8, 25), (9,), (8, 25)))]


def shortlisted(todo: list[Search], seed: int) -> list[Search]:
    """Each search with a random third of the vocabulary as candidates, plus EOS, the
    sentinels and its constraints' tokens (as the translator adds them)."""
    rng = np.random.default_rng(seed)
    return [replace(s, candidates=np.union1d(
        rng.choice(VOCAB, VOCAB // 3, replace=False),
        [EOS, *SENTINELS, *(t for c in s.constraints for t in c)]).astype(np.int64))
        for s in todo]


def engine(model: ToyModel, shortlist: bool, ceiling: int = 0) -> Engine:
    return Engine(model, BOS, EOS, SENTINELS, shortlist, ceiling, CONTINUATION)


def alone(model: ToyModel, encoded: EncodedBatch, i: int, search: Search) -> list[Hypothesis]:
    e = engine(model, search.candidates is not None)
    [sid] = e.admit(encoded.take(np.array([i])), [search])
    while not (done := e.step()):
        pass
    return done[sid]


def occurrences(tokens: list[int], sequence: tuple[int, ...]) -> int:
    """Whole occurrences: not followed by a piece that goes on with its last word."""
    n, i, found = len(sequence), 0, 0
    while i + n <= len(tokens):
        whole = i + n == len(tokens) or not CONTINUATION[tokens[i + n]]
        if tuple(tokens[i:i + n]) == sequence and whole:
            found, i = found + 1, i + n
        else:
            i += 1
    return found


def test_progress_follows_each_constraint_token_by_token() -> None:
    constraints = ((5, 6), (7,))
    p = Progress.start(constraints)
    assert p.allowed(constraints) == {5, 7} and p.tokens == 0
    p = p.advance(5, constraints)
    assert p.current == (0, 1) and p.allowed(constraints) == {6}
    assert p.tokens == 1
    broken = p.advance(9, constraints)  # broken off half-way: not met
    assert broken == Progress((False, False)) and broken.allowed(constraints) == {5, 7}
    assert broken.tokens == 0
    switched = p.advance(7, constraints)  # breaks the first, meets the second
    assert switched.met == (False, True) and switched.just_met == 1 and switched.tokens == 1
    p = p.advance(6, constraints)
    assert p.met == (True, False) and p.just_met == 0 and p.tokens == 2
    mulle = p.advance(27, constraints, continues_word=True)  # "Müll" + "e": not the term
    assert mulle.met == (False, False) and mulle.tokens == 0
    p = p.advance(3, constraints).advance(7, constraints)
    assert p.complete and p.allowed(constraints) == set() and p.tokens == 3
    twice = ((4,), (4,))
    assert Progress.start(twice).advance(4, twice).advance(4, twice).complete


def test_a_met_terms_word_ends_where_the_term_does() -> None:
    """After the term's last piece a hypothesis may not go on with its word ("Müll" + "e"):
    the expansion is not kept, and the others are."""
    constraints = ((5, 6),)
    met = Progress.start(constraints).advance(5, constraints).advance(6, constraints)
    fresh = Progress.start(constraints)
    ranked = [(-0.1, 0, 27), (-0.2, 1, 5), (-0.3, 0, 3), (-0.4, 1, 27)]
    choice = choose(ranked, 3, [met, fresh], constraints, EOS, CONTINUATION)
    kept = {(b, token): after for b, token, _, after in choice.live}
    assert set(kept) == {(0, 3), (1, 5), (1, 27)}  # 27 goes on with a word, not a term
    assert kept[0, 3].complete  # the term stays met
    only = choose([(-0.1, 0, 27), (-0.2, 0, 28)], 2, [met], constraints, EOS, CONTINUATION)
    assert [token for _, token, _, _ in only.live] == [27, 28]  # nothing else: kept


@pytest.mark.parametrize(("banks", "beam", "counts", "sizes"), [
    (3, 4, [5, 5, 5], [1, 1, 2]),  # equal shares, the remainder to the highest bank
    (3, 4, [5, 5, 0], [1, 3, 0]),  # an empty bank gives its share to the next lower one
    (3, 4, [0, 5, 5], [0, 1, 3]),  # ... and the lowest to the highest
    (5, 4, [9, 0, 0, 0, 1], [3, 0, 0, 0, 1]),  # more banks than slots: pushed down
])
def test_bank_sizes_share_the_beam_as_sockeye_does(banks: int, beam: int, counts: list[int],
                                                   sizes: list[int]) -> None:
    assert bank_sizes(banks, beam, counts) == sizes
    assert sum(sizes) == beam


@pytest.mark.parametrize("shortlist", [False, True], ids=["full", "shortlist"])
@pytest.mark.parametrize("seed", [2, 7, 13])
def test_every_finished_hypothesis_holds_every_constraint(seed: int, shortlist: bool) -> None:
    model = ToyModel(vocab=VOCAB, seed=seed)
    encoded, todo = model.encode(LENGTHS), searches()
    if shortlist:
        todo = shortlisted(todo, seed)
    for i, search in enumerate(todo):
        hyps = alone(model, encoded, i, search)
        assert 1 <= len(hyps) <= search.n_best
        for h in hyps[:1] + [h for h in hyps[1:] if h.ended]:  # the best one even if cut off
            for constraint in set(search.constraints):
                assert occurrences(h.tokens, constraint) >= search.constraints.count(
                    constraint), (i, h.tokens)
            if search.required is not None and h.ended:
                assert [h.tokens.count(int(s)) for s in SENTINELS] == (
                    search.required.tolist())


@pytest.mark.parametrize("shortlist", [False, True], ids=["full", "shortlist"])
@pytest.mark.parametrize("ceiling", [0, 40], ids=["every-row", "ceiling"])
@pytest.mark.parametrize("seed", [4, 9])
def test_constrained_sentences_get_their_solo_results_in_a_running_batch(
        seed: int, shortlist: bool, ceiling: int) -> None:
    model = ToyModel(vocab=VOCAB, seed=seed)
    encoded, todo = model.encode(LENGTHS), searches()
    if shortlist:
        todo = shortlisted(todo, seed)
    expected = [alone(model, encoded, i, s) for i, s in enumerate(todo)]
    results = joining_at_random(engine(model, shortlist, ceiling), encoded, todo, seed)
    for i, hyps in enumerate(expected):
        assert_same(results[i], hyps)


def test_unconstrained_sentences_are_untouched_by_constrained_neighbours() -> None:
    model = ToyModel(vocab=VOCAB, seed=5)
    encoded, todo = model.encode(LENGTHS), searches()
    plain = [i for i, s in enumerate(todo) if not s.constraints]
    e = engine(model, False)
    ids = e.admit(encoded, todo)
    results: dict[int, list[Hypothesis]] = {}
    while len(results) < len(ids):
        results.update(e.step())
    for i in plain:  # the same as in an engine that never saw a constraint
        bare = Engine(model, BOS, EOS, SENTINELS)
        [sid] = bare.admit(encoded.take(np.array([i])), [todo[i]])
        while not (done := bare.step()):
            pass
        assert_same(results[ids[i]], done[sid])


def test_a_vocabulary_locates_any_token_in_every_row() -> None:
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(40, size, replace=False)) for size in (5, 17, 1, 30)]
    vocab = Vocabulary.of(sets)
    tokens = np.array([int(sets[1][3]), int(sets[3][0]), int(sets[0][-1])])
    where = vocab.locate(tokens)
    width = vocab.columns.shape[1]
    for r, own in enumerate(sets):
        for t, token in enumerate(tokens):
            if token in own:
                assert vocab.ids[vocab.columns[r, where[r, t]]] == token
            else:
                assert where[r, t] == width - 1  # a padding column
