"""Forced decoding: how probable the model finds a given output (teacher forcing)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.decoding.types import EncodedBatch, StepModel
from service.decoding.vocabulary import Vocabulary


def forced_log_probs(model: StepModel, encoded: EncodedBatch, bos: int, eos: int,
                     targets: Sequence[Sequence[int]], vocab: Vocabulary | None = None
                     ) -> np.ndarray:
    """Log-probability of each target (ids without BOS and EOS; EOS is scored too).

    :param targets: B id lists, one per row of ``encoded``
    :param vocab: with a shortlist, each row's candidates (a step's distribution is then
        normalized over them, as the restricted search does; a token outside them is -inf)
    :return: (B,) float64, the sum of the step log-probabilities
    """
    B = len(targets)
    lengths = np.array([len(t) + 1 for t in targets])  # + EOS
    gold = np.full((B, int(lengths.max())), eos, dtype=np.int64)  # (B, T), EOS-padded
    for row, ids in enumerate(targets):
        gold[row, : len(ids)] = ids
    prev = np.full(B, bos, dtype=np.int64)
    hidden = encoded.hidden
    total = np.zeros(B, dtype=np.float64)
    rows = np.arange(B)
    for t in range(gold.shape[1]):
        log_probs, hidden, _ = model.step_log_probs(prev, hidden, encoded, rows)  # (B, V)
        if vocab is None:
            picked = log_probs[np.arange(B), gold[:, t]]
        else:
            column = np.minimum(np.searchsorted(vocab.ids, gold[:, t]), vocab.ids.size - 1)
            listed = vocab.ids[column] == gold[:, t]
            picked = np.where(listed, vocab.restrict(log_probs)[np.arange(B), column], -np.inf)
        total += np.where(t < lengths, picked, 0.0)
        prev = gold[:, t]
    return total
