"""Batched greedy decoding; sentences leave the batch as they finish."""

from __future__ import annotations

import numpy as np

from service.decoding.constraints import Placeholders, constrain, emitted
from service.decoding.types import EncodedBatch, Hypothesis, StepModel


def greedy_search(
    model: StepModel,
    encoded: EncodedBatch,
    bos: int,
    eos: int,
    max_len: np.ndarray,
    placeholders: Placeholders | None = None,
) -> list[Hypothesis]:
    """Pick the most probable token at every step.

    :param max_len: (B,) steps allowed per sentence, EOS included
    :param placeholders: if given, keep every source sentinel and invent none
    """
    B, S = encoded.mask.shape
    active = np.arange(B)  # original index of each row still decoding
    rows = encoded
    hidden = encoded.hidden
    prev = np.full(B, bos, dtype=np.int64)
    tokens: list[list[int]] = [[] for _ in range(B)]
    attention: list[list[np.ndarray]] = [[] for _ in range(B)]
    scores = np.zeros(B, dtype=np.float64)
    ended = np.zeros(B, dtype=bool)
    missing = placeholders.required.copy() if placeholders is not None else None  # (B, P)
    step = 0
    while active.size:
        log_probs, hidden, attn = model.step(prev, hidden, rows)  # (N, V), (N, H), (N, S)
        if placeholders is not None and missing is not None:
            log_probs = constrain(log_probs, missing[active], placeholders.sentinel_ids, eos)
        prev = log_probs.argmax(axis=-1)  # (N,)
        if placeholders is not None and missing is not None:
            missing[active] -= emitted(prev, placeholders.sentinel_ids)
        step += 1
        scores[active] += log_probs[np.arange(active.size), prev]
        for row, sentence in enumerate(active):
            attention[sentence].append(attn[row])
            if prev[row] != eos:
                tokens[sentence].append(int(prev[row]))
            else:
                ended[sentence] = True
        keep = (prev != eos) & (step < max_len[active])
        if not keep.all():
            active, prev, hidden = active[keep], prev[keep], hidden[keep]
            rows = rows.take(keep)
    return [
        Hypothesis(tokens[i], float(scores[i]), np.stack(attention[i]) if attention[i]
                   else np.zeros((0, S), np.float32), ended=bool(ended[i]))
        for i in range(B)
    ]
