"""Placeholder constraints: every source sentinel appears in the output, no other does.

A small model sometimes drops or invents a placeholder (``<ph0>`` standing for ``%s``).
During search, a sentinel absent from the source (or already emitted as often as the source
has it) gets probability 0, and EOS is forbidden while one is still missing.
"""

from __future__ import annotations

import numpy as np

from service.decoding.types import TokenPenalty


def penalty(missing: np.ndarray, sentinel_ids: np.ndarray, eos: int) -> TokenPenalty:
    """The constraint as a step penalty: a sentinel no longer owed (or absent from the
    source) and EOS while one is still owed get -inf; everything else is untouched.

    :param missing: (R, P) how often each sentinel must still be emitted, per row
    """
    owed = missing > 0  # (R, P)
    values = np.concatenate([np.where(owed, 0.0, -np.inf),
                             np.where(owed.any(axis=1, keepdims=True), -np.inf, 0.0)], axis=1)
    return TokenPenalty(np.append(sentinel_ids, eos).astype(np.int64), values.astype(np.float32))


def emitted(tokens: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """(R,) tokens -> (R, P) one-hot of which sentinel each token is (zeros otherwise)."""
    return (tokens[:, None] == sentinel_ids[None, :]).astype(np.int64)
