"""What the search functions need from a model, and what they return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class EncodedBatch:
    """Encoder results for a batch of sentences; rows can be gathered/dropped together."""

    outputs: np.ndarray  # (B, S, D) float32
    hidden: np.ndarray  # (B, H) float32, the decoder's initial state
    keys: np.ndarray  # (B, S, K) float32, attention keys projected once per sentence
    mask: np.ndarray  # (B, S) bool, True on real source tokens

    def take(self, rows: np.ndarray) -> EncodedBatch:
        return EncodedBatch(self.outputs[rows], self.hidden[rows], self.keys[rows], self.mask[rows])

    @property
    def src_lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)


class StepModel(Protocol):
    """One decoder step over a batch of rows."""

    def step(
        self,
        prev_tokens: np.ndarray,  # (N,) int64
        hidden: np.ndarray,  # (N, H)
        encoded: EncodedBatch,  # N rows
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (log_probs (N, V), next hidden (N, H), attention (N, S))."""
        ...


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    score: float  # log-probability, length-normalized for beam search
    attention: np.ndarray  # (T, S): one row per generated token, and one for EOS if ended
    ended: bool  # it ended with EOS (False: cut off at the step limit)


EXTRA_TARGET_TOKENS = 10  # short sources may have longer translations ("OK" -> "In Ordnung")


def max_lengths(src_lengths: np.ndarray, ratio: float, cap: int) -> np.ndarray:
    """Per-sentence step limit: ratio * source length + EXTRA_TARGET_TOKENS, at most ``cap``."""
    return np.minimum(np.ceil(src_lengths * ratio).astype(np.int64) + EXTRA_TARGET_TOKENS, cap)
