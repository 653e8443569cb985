"""Placeholder constraints: every source sentinel appears in the output, no other does.

A small model sometimes drops or invents a placeholder (``<ph0>`` standing for ``%s``).
During search, a sentinel absent from the source (or already emitted as often as the source
has it) gets probability 0, and EOS is forbidden while one is still missing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Placeholders:
    sentinel_ids: np.ndarray  # (P,) vocabulary ids of <ph0>..<phP-1>
    required: np.ndarray  # (B, P) how often each sentinel occurs in each source

    def take(self, rows: np.ndarray) -> Placeholders:
        return Placeholders(self.sentinel_ids, self.required[rows])


def constrain(log_probs: np.ndarray, missing: np.ndarray, sentinel_ids: np.ndarray, eos: int
              ) -> np.ndarray:
    """Mask impossible tokens. :param log_probs: (R, V); missing: (R, P) still to emit."""
    out = log_probs.copy()
    out[:, sentinel_ids] = np.where(missing > 0, out[:, sentinel_ids], -np.inf)
    out[:, eos] = np.where((missing > 0).any(axis=1), -np.inf, out[:, eos])
    return out


def emitted(tokens: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """(R,) tokens -> (R, P) one-hot of which sentinel each token is (zeros otherwise)."""
    return (tokens[:, None] == sentinel_ids[None, :]).astype(np.int64)
