"""Batched greedy decoding; sentences leave the batch as they finish."""

from __future__ import annotations

import numpy as np

from service.decoding.constraints import Placeholders, emitted, penalty
from service.decoding.types import EncodedBatch, Hypothesis, StepModel, TokenPenalty


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
    active = np.arange(B)  # the sentence of each row still decoding
    hidden = encoded.hidden
    prev = np.full(B, bos, dtype=np.int64)
    tokens: list[list[int]] = [[] for _ in range(B)]
    attention: list[list[np.ndarray]] = [[] for _ in range(B)]
    scores = np.zeros(B, dtype=np.float64)
    ended = np.zeros(B, dtype=bool)
    missing = placeholders.required.copy() if placeholders is not None else None  # (B, P)
    step = 0
    while active.size:
        if placeholders is not None and missing is not None:
            constraint = penalty(missing[active], placeholders.sentinel_ids, eos)
        else:
            constraint = TokenPenalty.none(active.size)
        out = model.step(prev, hidden, encoded, active, 1, constraint)
        prev, hidden = out.top_ids[:, 0], out.hidden  # (N,), (N, H)
        if placeholders is not None and missing is not None:
            missing[active] -= emitted(prev, placeholders.sentinel_ids)
        step += 1
        scores[active] += out.top_log_probs[:, 0]
        for row, sentence in enumerate(active):
            attention[sentence].append(out.attention[row])
            if prev[row] != eos:
                tokens[sentence].append(int(prev[row]))
            else:
                ended[sentence] = True
        keep = (prev != eos) & (step < max_len[active])
        if not keep.all():
            active, prev, hidden = active[keep], prev[keep], hidden[keep]
    return [
        Hypothesis(tokens[i], float(scores[i]), np.stack(attention[i]) if attention[i]
                   else np.zeros((0, S), np.float32), ended=bool(ended[i]))
        for i in range(B)
    ]
