import itertools

import numpy as np
import pytest

from service.decoding import beam_search, greedy_search, length_penalty
from service.decoding.types import top_k_ids
from tests.service.decoding.reference import Placeholders, reference_beam_search
from tests.service.decoding.toy import ToyModel

BOS, EOS = 0, 1


def brute_force(model: ToyModel, lengths: list[int], sentence: int, max_len: int,
                alpha: float) -> list[tuple[list[int], float]]:
    """Every hypothesis the search space holds, scored like beam search, best first."""
    encoded = model.encode(lengths).take(np.array([sentence]))
    results = []
    non_eos = [t for t in range(model.vocab) if t != EOS]
    for steps in range(1, max_len + 1):
        # Hypotheses end in EOS, or run out of steps at max_len without one.
        last_tokens = [EOS, *non_eos] if steps == max_len else [EOS]
        for prefix in itertools.product(non_eos, repeat=steps - 1):
            for last in last_tokens:
                hidden, prev, total = encoded.hidden, np.array([BOS]), 0.0
                for token in (*prefix, last):
                    log_probs, hidden, _ = model.step_log_probs(prev, hidden, encoded,
                                                                np.array([0]))
                    total += float(log_probs[0, token])
                    prev = np.array([token])
                tokens = [*prefix] + ([last] if last != EOS else [])
                results.append((tokens, total / length_penalty(steps, alpha)))
    return sorted(results, key=lambda r: -r[1])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_equals_exhaustive_search(alpha: float) -> None:
    model = ToyModel(vocab=4)
    lengths, max_len = [3, 2], 3
    beam = 4 ** max_len  # wide enough that nothing is ever pruned
    found = beam_search(model, model.encode(lengths), BOS, EOS, np.array([max_len] * 2),
                        beam_size=beam, n_best=5, alpha=alpha)
    for sentence in range(2):
        expected = brute_force(model, lengths, sentence, max_len, alpha)[:5]
        assert [h.tokens for h in found[sentence]] == [tokens for tokens, _ in expected]
        np.testing.assert_allclose([h.score for h in found[sentence]],
                                   [s for _, s in expected], rtol=1e-5)


def test_beam_of_one_equals_greedy() -> None:
    model = ToyModel(vocab=12, seed=3)
    lengths = [5, 1, 7, 3, 4, 6]
    max_len = np.array([6, 4, 9, 5, 8, 7])
    greedy = greedy_search(model, model.encode(lengths), BOS, EOS, max_len)
    beam = beam_search(model, model.encode(lengths), BOS, EOS, max_len, beam_size=1)
    for g, [b] in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        np.testing.assert_allclose(g.attention, b.attention)
    assert any(len(g.tokens) < limit for g, limit in zip(greedy, max_len, strict=True))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_results_do_not_depend_on_batch_mates(beam_size: int) -> None:
    model = ToyModel(vocab=10, seed=5)
    lengths = [4, 2, 6, 3]
    encoded = model.encode(lengths)
    limits = np.array([8, 5, 10, 6])
    together = beam_search(model, encoded, BOS, EOS, limits, beam_size=beam_size, n_best=1)
    for i in range(len(lengths)):
        alone = beam_search(model, encoded.take(np.array([i])), BOS, EOS, limits[[i]],
                            beam_size=beam_size, n_best=1)
        assert alone[0][0].tokens == together[i][0].tokens
        assert alone[0][0].score == pytest.approx(together[i][0].score, rel=1e-6)


def test_attention_rows_are_distributions_over_the_source() -> None:
    model = ToyModel(vocab=8, seed=2)
    lengths = [5, 2]
    [[first], [second]] = beam_search(model, model.encode(lengths), BOS, EOS, np.array([6, 6]),
                                      beam_size=2)
    for hyp, length in ((first, 5), (second, 2)):
        assert hyp.attention.shape[0] in (len(hyp.tokens), len(hyp.tokens) + 1)
        np.testing.assert_allclose(hyp.attention.sum(axis=1), 1.0, rtol=1e-5)
        assert (hyp.attention[:, length:] == 0).all()


def test_n_best_is_sorted_and_bounded() -> None:
    model = ToyModel(vocab=8, seed=4)
    [hyps] = beam_search(model, model.encode([4]), BOS, EOS, np.array([6]), beam_size=4,
                         n_best=3)
    assert len(hyps) == 3
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    with pytest.raises(ValueError, match="n_best must be between 1 and beam_size"):
        beam_search(model, model.encode([4]), BOS, EOS, np.array([6]), beam_size=2, n_best=3)


def test_max_length_is_respected() -> None:
    model = ToyModel(vocab=8, seed=6)
    greedy = greedy_search(model, model.encode([3, 3]), BOS, EOS, np.array([1, 2]))
    assert len(greedy[0].tokens) <= 1 and len(greedy[1].tokens) <= 2
    [[hyp]] = beam_search(model, model.encode([3]), BOS, EOS, np.array([2]), beam_size=3)
    assert len(hyp.tokens) <= 2


def test_top_k_ids_orders_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.5, 0.5, -1.0, 0.3]])
    assert top_k_ids(scores, 3).tolist() == [[1, 2, 4]]


@pytest.mark.parametrize(("seed", "beam_size", "n_best", "constrained"),
                         [(1, 2, 1, False), (7, 4, 3, False), (15, 3, 2, True), (21, 5, 5, True)])
def test_search_over_top_k_candidates_equals_full_vocabulary_search(
        seed: int, beam_size: int, n_best: int, constrained: bool) -> None:
    """Same hypotheses, scores and attention as the previous search, which ranked every
    (beam, token) pair from full log-probabilities and copied the history every step."""
    model = ToyModel(vocab=14, seed=seed)
    lengths, limits = [4, 1, 6, 3, 5], np.array([9, 3, 12, 7, 30])
    constraint = Placeholders(np.array([10, 11]), np.array(
        [[1, 0], [0, 0], [2, 1], [0, 1], [1, 1]])) if constrained else None
    expected = reference_beam_search(model, model.encode(lengths), BOS, EOS, limits,
                                     beam_size=beam_size, n_best=n_best, alpha=0.8,
                                     placeholders=constraint)
    found = beam_search(model, model.encode(lengths), BOS, EOS, limits, beam_size=beam_size,
                        n_best=n_best, alpha=0.8,
                        sentinel_ids=constraint.sentinel_ids if constraint else None,
                        required=constraint.required if constraint else None)
    for ours, theirs in zip(found, expected, strict=True):
        assert [h.tokens for h in ours] == [h.tokens for h in theirs]
        # The engine pads sources to a multiple of 8, the reference to the batch's longest:
        # the toy model's sums over the source then round differently in the last bits.
        np.testing.assert_allclose([h.score for h in ours], [h.score for h in theirs],
                                   rtol=1e-6)
        assert [h.ended for h in ours] == [h.ended for h in theirs]
        for a, b in zip(ours, theirs, strict=True):  # ours without the batch's padding
            S = a.attention.shape[1]
            np.testing.assert_allclose(a.attention, b.attention[:, :S], atol=1e-6)
            assert not b.attention[:, S:].any()


def test_placeholder_constraint_keeps_required_sentinels_and_invents_none() -> None:
    model = ToyModel(vocab=12, seed=15)  # a seed where most hypotheses end with EOS
    sentinels = np.array([8, 9, 10])
    required = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0]])  # per sentence
    lengths, limits = [4, 3, 5], np.array([30, 30, 30])
    greedy = greedy_search(model, model.encode(lengths), BOS, EOS, limits, sentinels, required)
    beams = beam_search(model, model.encode(lengths), BOS, EOS, limits, beam_size=3, n_best=3,
                        sentinel_ids=sentinels, required=required)
    finished_with_sentinel = 0
    for i in range(3):
        for hyp in [greedy[i], *beams[i]]:
            counts = np.array([hyp.tokens.count(int(s)) for s in sentinels])
            assert (counts <= required[i]).all(), (i, hyp.tokens)  # none invented
            if hyp.ended:  # ended with EOS: none missing
                assert (counts == required[i]).all(), (i, hyp.tokens)
                finished_with_sentinel += int(required[i].any())
    assert finished_with_sentinel > 0
    [[single]] = beam_search(model, model.encode(lengths).take(np.array([0])), BOS, EOS,
                             limits[:1], beam_size=1, sentinel_ids=sentinels,
                             required=required[:1])
    assert single.tokens == greedy[0].tokens  # beam(1) == greedy under the constraint too


def test_owed_placeholders_are_emitted_before_the_length_limit() -> None:
    """A hypothesis the limit ends has emitted every sentinel it owed: in its last steps if
    the model did not."""
    model = ToyModel(vocab=12, seed=15)
    sentinels = np.array([8, 9, 10])
    required = np.array([[1, 0, 0], [0, 2, 1], [1, 1, 1]])
    lengths, limits = [4, 3, 5], np.array([2, 3, 4])  # room for what each owes, little more
    greedy = greedy_search(model, model.encode(lengths), BOS, EOS, limits, sentinels, required)
    beams = beam_search(model, model.encode(lengths), BOS, EOS, limits, beam_size=3, n_best=3,
                        sentinel_ids=sentinels, required=required)
    hypotheses = [(i, hyp) for i in range(3) for hyp in [greedy[i], *beams[i]]]
    assert any(not hyp.ended for _, hyp in hypotheses)
    for i, hyp in hypotheses:
        counts = [hyp.tokens.count(int(s)) for s in sentinels]
        assert counts == required[i].tolist(), (i, hyp.tokens)
