"""The ``opennmt`` beam rule against a literal port of OpenNMT-py 3.5.1's
``onmt/translate/beam_search.py`` (``BeamSearch.advance`` / ``update_finished`` with
``length_penalty avg``), one sentence at a time from full log-probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from service.decoding import EncodedBatch, Engine, Search
from service.decoding.engine import run_to_end
from tests.service.decoding.toy import ToyModel

BOS, EOS = 0, 1
FINISHED = -65504.0  # what OpenNMT-py writes over a finished beam's score


def onmt_beam_search(model: ToyModel, encoded: EncodedBatch, sentence: int, K: int,
                     n_best: int, alpha: float, max_length: int
                     ) -> list[tuple[float, list[int]]]:
    """(score, tokens) of the n_best hypotheses, best first, as OpenNMT-py returns them."""
    one = encoded.take(np.array([sentence]))
    hidden = np.repeat(one.hidden, K, axis=0)
    rows = np.zeros(K, np.int64)
    topk_log_probs = np.array([0.0] + [-np.inf] * (K - 1))
    alive = [[BOS] for _ in range(K)]
    hypotheses: list[tuple[float, list[int]]] = []
    for _ in range(max_length):
        log_probs, hidden, _ = model.step_log_probs(
            np.array([a[-1] for a in alive]), hidden, one, rows)
        V = log_probs.shape[1]
        step = len(alive[0])  # BeamSearch.__len__: alive_seq length, the start token too
        lp = (step + 1.0) ** alpha  # GNMTGlobalScorer.length_penalty avg
        curr = ((log_probs.astype(np.float64) + topk_log_probs[:, None]) / lp).reshape(-1)
        # torch.topk's order among equal scores is unspecified: take the lower index first
        top = np.argsort(-curr, kind="stable")[:K]
        topk_scores = curr[top]
        topk_log_probs = topk_scores * lp
        beam, token = top // V, top % V
        alive = [alive[b] + [int(t)] for b, t in zip(beam, token, strict=True)]
        hidden = hidden[beam]
        finished = token == EOS
        if len(alive[0]) == max_length + 1:  # ensure_max_length
            finished[:] = True
        topk_log_probs = np.where(finished, FINISHED, topk_log_probs)
        for j in np.nonzero(finished)[0]:
            tokens = alive[j][1:]
            hypotheses.append((float(topk_scores[j]), tokens[:-1] if tokens[-1] == EOS
                               else tokens))
        if finished[0] and len(hypotheses) >= n_best:
            break
    return sorted(hypotheses, key=lambda h: h[0], reverse=True)[:n_best]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("beam", "n_best"), [(1, 1), (2, 1), (4, 1), (4, 3), (5, 5)])
def test_engine_equals_opennmt_beam_search(seed: int, beam: int, n_best: int) -> None:
    model = ToyModel(vocab=9, seed=seed)
    lengths = [3, 7, 1, 5, 4]
    encoded = model.encode(lengths, seed=seed + 10)
    limits = np.array([6, 12, 4, 20, 9])  # some sentences end at the limit
    searches = [Search(int(limits[i]), beam, n_best, 1.0, None, "opennmt")
                for i in range(len(lengths))]
    found = run_to_end(Engine(model, BOS, EOS), encoded, searches)
    for i, hyps in enumerate(found):
        expected = onmt_beam_search(model, encoded, i, beam, n_best, 1.0, int(limits[i]))
        assert [h.tokens for h in hyps] == [tokens for _, tokens in expected], i
        assert [h.score for h in hyps] == pytest.approx([s for s, _ in expected], abs=1e-5)


def test_the_two_rules_can_share_a_running_batch() -> None:
    model = ToyModel(vocab=9, seed=3)
    encoded = model.encode([4, 6])
    rules = ("opennmt", "gnmt")
    together = run_to_end(Engine(model, BOS, EOS), encoded,
                          [Search(10, 4, 1, 1.0, None, rule) for rule in rules])
    for i, rule in enumerate(rules):
        [alone] = run_to_end(Engine(model, BOS, EOS), encoded.take(np.array([i])),
                             [Search(10, 4, 1, 1.0, None, rule)])
        assert [h.tokens for h in together[i]] == [h.tokens for h in alone]
