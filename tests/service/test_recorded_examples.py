"""The bundle's recorded examples hold on this machine, compared by probability, not string.

The examples were decoded on another CPU (``metrics.provenance``); near-ties in the logits may
break differently here. What must hold, both ways: the recorded output is still (almost) as
probable as what this machine's search finds (the model did not change), and what the search
finds is (almost) as probable as the recorded output (the search did not get worse); identical
outputs score the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from service.bundle import read_manifest
from service.decoding import length_penalty
from service.translator import DecodeOptions, Translator
from tests.conftest import DEFAULT_BUNDLE

EXAMPLES: list[dict[str, Any]] = read_manifest(DEFAULT_BUNDLE).metrics["examples"]
MARGIN = 0.05  # nats: far above float rounding, far below a different translation


@pytest.fixture(scope="module")
def translator() -> Translator:
    """As the bundle serves: its variant, with its shortlist (forced decoding then scores
    over each text's candidates, as the search does)."""
    translator = Translator(DEFAULT_BUNDLE, EXAMPLES[0]["variant"])
    assert {e["shortlist"] for e in EXAMPLES} == {translator.shortlist is not None}
    return translator


def test_forced_decoding_scores_what_greedy_search_found(translator: Translator) -> None:
    sources = [e["source"] for e in EXAMPLES]
    found = [t.best for t in translator.translate(sources, DecodeOptions(beam_size=1))]
    forced = translator.log_probability(sources, [c.token_ids for c in found])
    for candidate, score in zip(found, forced, strict=True):
        assert score == pytest.approx(candidate.score, abs=1e-4)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["source"][:30] for e in EXAMPLES])
def test_recorded_outputs_are_still_as_probable(translator: Translator,
                                               example: dict[str, Any]) -> None:
    source = example["source"]
    greedy = translator.translate([source], DecodeOptions(beam_size=1))[0].best
    [recorded] = translator.log_probability([source], [example["greedy_tokens"]])
    assert recorded >= greedy.score - MARGIN, (source, example["greedy"], greedy.text)
    assert greedy.score >= recorded - MARGIN, (source, example["greedy"], greedy.text)
    if greedy.token_ids == example["greedy_tokens"]:
        # same output: float rounding on another CPU may flip an int8 activation, no more
        assert recorded == pytest.approx(example["greedy_score"], abs=MARGIN)

    beam = translator.translate([source], DecodeOptions(beam_size=example["beam_size"]))[0].best
    [raw] = translator.log_probability([source], [example["beam_tokens"]])
    alpha = translator.defaults.length_penalty
    normalized = raw / length_penalty(len(example["beam_tokens"]) + 1, alpha)
    assert normalized >= beam.score - MARGIN, (source, example["beam"], beam.text)
    assert beam.score >= normalized - MARGIN, (source, example["beam"], beam.text)
