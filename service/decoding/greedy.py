"""Batched greedy decoding; sentences leave the batch as they finish."""

from __future__ import annotations

import numpy as np

from service.decoding.types import EncodedBatch, Hypothesis, StepModel


def greedy_search(
    model: StepModel,
    encoded: EncodedBatch,
    bos: int,
    eos: int,
    max_len: np.ndarray,
) -> list[Hypothesis]:
    """Pick the most probable token at every step.

    :param max_len: (B,) steps allowed per sentence, EOS included
    """
    B, S = encoded.mask.shape
    active = np.arange(B)  # original index of each row still decoding
    rows = encoded
    hidden = encoded.hidden
    prev = np.full(B, bos, dtype=np.int64)
    tokens: list[list[int]] = [[] for _ in range(B)]
    attention: list[list[np.ndarray]] = [[] for _ in range(B)]
    scores = np.zeros(B, dtype=np.float64)
    step = 0
    while active.size:
        log_probs, hidden, attn = model.step(prev, hidden, rows)  # (N, V), (N, H), (N, S)
        prev = log_probs.argmax(axis=-1)  # (N,)
        step += 1
        scores[active] += log_probs[np.arange(active.size), prev]
        for row, sentence in enumerate(active):
            attention[sentence].append(attn[row])
            if prev[row] != eos:
                tokens[sentence].append(int(prev[row]))
        keep = (prev != eos) & (step < max_len[active])
        if not keep.all():
            active, prev, hidden = active[keep], prev[keep], hidden[keep]
            rows = rows.take(keep)
    return [
        Hypothesis(tokens[i], float(scores[i]), np.stack(attention[i]) if attention[i]
                   else np.zeros((0, S), np.float32))
        for i in range(B)
    ]
