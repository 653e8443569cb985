"""What the search functions need from a model, and what they return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.decoding.vocabulary import Vocabulary


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


@dataclass(frozen=True)
class TokenPenalty:
    """Values added to a few tokens' log-probabilities, per row (0 keeps, -inf forbids)."""

    token_ids: np.ndarray  # (C,) int64
    values: np.ndarray  # (R, C) float32

    @staticmethod
    def none(rows: int) -> TokenPenalty:
        return TokenPenalty(np.zeros(0, np.int64), np.zeros((rows, 0), np.float32))


@dataclass
class StepOutput:
    top_log_probs: np.ndarray  # (R, k) float32, best first
    top_ids: np.ndarray  # (R, k) int64; ties go to the lower id
    hidden: np.ndarray  # (R, H)
    attention: np.ndarray | None  # (R, S); None when not asked for

    @staticmethod
    def from_log_probs(log_probs: np.ndarray, hidden: np.ndarray, attention: np.ndarray | None,
                       top_k: int, penalty: TokenPenalty, vocab: Vocabulary | None = None
                       ) -> StepOutput:
        """What the step graph computes, in numpy, from full (R, V) log-probabilities: for
        step models that return those (format 1 bundles, PyTorch, tests). With ``vocab``,
        as the restricted graph of :mod:`service.shortlist` does."""
        columns = penalty.token_ids
        if vocab is not None:
            log_probs, columns = vocab.restrict(log_probs), vocab.positions(penalty.token_ids)
        elif columns.size:
            log_probs = log_probs.copy()
        if columns.size:
            log_probs[:, columns] += penalty.values
        top = top_k_ids(log_probs, top_k)
        top_ids = top if vocab is None else vocab.ids[top]
        return StepOutput(np.take_along_axis(log_probs, top, axis=1), top_ids, hidden, attention)


def top_k_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best columns per row, best first; ties go to the lower index.

    :param scores: (N, C) -> (N, k)
    """
    C = scores.shape[1]
    k = min(k, C)
    kth = np.partition(scores, C - k, axis=1)[:, C - k, None]  # each row's k-th largest
    # Everything above it, then as many of the values equal to it as fit, lowest index
    # first (argpartition alone would pick tied columns at the boundary arbitrarily).
    above = scores > kth
    tied = scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    part = np.nonzero(chosen)[1].reshape(-1, k)  # ascending index within each row
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class StepModel(Protocol):
    """One decoder step over R rows (hypotheses) of the sentences in ``encoded``."""

    def step(
        self,
        prev_tokens: np.ndarray,  # (R,) int64
        hidden: np.ndarray,  # (R, H)
        encoded: EncodedBatch,  # B sentences, stored once each
        row_sentence: np.ndarray,  # (R,) int64: the sentence of each row
        top_k: int,  # best tokens to return per row
        penalty: TokenPenalty,  # on vocabulary ids
        vocab: Vocabulary | None = None,  # the shortlist of this step; None: every token
        attention: bool = True,  # False: StepOutput.attention is None
    ) -> StepOutput:
        ...

    def step_log_probs(
        self, prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
        row_sentence: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log_probs (R, V), next hidden (R, H), attention (R, S)): forced decoding only."""
        ...


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without BOS and EOS
    score: float  # log-probability, length-normalized for beam search
    attention: np.ndarray | None  # (T, S): a row per generated token, and one for EOS if
    # ended; None when the search was not asked to keep attention
    ended: bool  # it ended with EOS (False: cut off at the step limit)


EXTRA_TARGET_TOKENS = 10  # short sources may have longer translations ("OK" -> "In Ordnung")


def max_lengths(src_lengths: np.ndarray, ratio: float, cap: int,
                extra: int = EXTRA_TARGET_TOKENS) -> np.ndarray:
    """Per-sentence step limit: int(ratio * source length) + extra, at most ``cap`` (as
    onmt_translate's ``int(min(max_length, src_len * ratio + extra))``)."""
    return np.minimum(np.floor(src_lengths * ratio).astype(np.int64) + extra, cap)
