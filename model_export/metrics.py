"""Corpus metrics: sacrebleu BLEU/chrF and the placeholder preservation rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import sacrebleu

from service.placeholders import find_placeholders, keeps_placeholders


@dataclass(frozen=True)
class Scores:
    bleu: float
    chrf: float
    placeholders_kept: float  # share of outputs keeping every placeholder of their source
    placeholder_sentences: int  # how many sources have a placeholder
    sentences: int

    def as_dict(self) -> dict[str, float | int]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def score(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]) -> Scores:
    with_ph = [i for i, s in enumerate(sources) if find_placeholders(s)]
    kept = sum(keeps_placeholders(sources[i], hypotheses[i]) for i in with_ph)
    return Scores(
        bleu=sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score,
        chrf=sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score,
        placeholders_kept=kept / len(with_ph) if with_ph else 1.0,
        placeholder_sentences=len(with_ph),
        sentences=len(sources),
    )
