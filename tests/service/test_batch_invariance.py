"""A sentence's translation does not depend on the sentences decoded with it.

The shipped quantized model is run on 64 held-out test sentences, each alone and then in
shuffled batches of 8, 32 and 64 (so each sentence meets different neighbours, longer and
shorter, at different positions), and joining a running batch of 16 as others finish,
greedy and beam, with the vocabulary shortlist (each row normalized over its own sentence's
candidates, whatever the union of the batch) and without. Tokens must be identical; scores
and attention may differ only by float rounding (padding changes summation lengths).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from service.translator import DecodeOptions, Translation, Translator
from tests.conftest import DEFAULT_BUNDLE

SENTENCES = [line.split("\t")[0] for line in (Path(__file__).parents[1] / "data" /
             "ui-strings.tsv").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module", params=[False, True], ids=["full", "shortlist"])
def translator(request: pytest.FixtureRequest) -> Translator:
    return Translator(DEFAULT_BUNDLE, "auto", shortlist=request.param)


def batched(translator: Translator, texts: list[str], size: int, options: DecodeOptions,
            seed: int) -> dict[str, Translation]:
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    out = {}
    for start in range(0, len(order), size):
        chunk = [texts[i] for i in order[start : start + size]]
        out |= dict(zip(chunk, translator.translate(chunk, options), strict=True))
    return out


@pytest.mark.parametrize("beam", [1, 4])
def test_translation_is_the_same_alone_and_in_any_batch(translator: Translator,
                                                         beam: int) -> None:
    assert len(SENTENCES) >= 50
    options = DecodeOptions(beam_size=beam, attention=True)
    alone = {t: translator.translate([t], options)[0] for t in SENTENCES}
    running = translator.translate_running(translator.prepare(SENTENCES), options, running=16)
    schedules = {f"batches of {size}": batched(translator, SENTENCES, size, options, seed)
                 for size, seed in ((8, 1), (32, 2), (64, 3))}
    schedules["joining a running batch of 16"] = dict(zip(SENTENCES, running, strict=True))
    for size, together in schedules.items():
        for text in SENTENCES:
            a, b = alone[text].best, together[text].best
            assert a.token_ids == b.token_ids, (text, size, a.text, b.text)
            assert abs(a.score - b.score) < 1e-5, (text, size)
            assert a.attention is not None and b.attention is not None
            S = a.attention.shape[1]  # in a batch, columns for the padding follow (all zero)
            np.testing.assert_allclose(a.attention, b.attention[:, :S], atol=1e-5)
            assert not b.attention[:, S:].any()
