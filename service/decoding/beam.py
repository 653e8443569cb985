"""Batched beam search as a few pure numpy functions.

Every sentence keeps ``K`` live hypotheses; the batch has ``N * K`` rows. The step graph
returns each row's ``2K`` best tokens (their union holds the sentence's ``2K`` best
expansions), so numpy never handles a rows x vocabulary array. Tokens and attention are
kept per step with back-pointers and read back only for finished hypotheses, so no step
copies the history. A sentence is done when it has ``K`` finished hypotheses or reaches its
length limit, and then leaves the batch, so results never depend on which other sentences
share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from service.decoding.constraints import Placeholders, emitted, penalty
from service.decoding.types import EncodedBatch, Hypothesis, StepModel, TokenPenalty


def length_penalty(length: int | np.ndarray, alpha: float) -> np.ndarray | float:
    """GNMT length penalty (Wu et al., 2016, sec. 7): ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class History:
    """Per step: each slot's token, the slot it extends and its attention row, stored by
    original sentence index (B, K), so sentences leaving the batch never move anything."""

    tokens: list[np.ndarray] = field(default_factory=list)  # (B, K) int64 per step
    parents: list[np.ndarray] = field(default_factory=list)  # (B, K) int64 per step
    attention: list[np.ndarray] = field(default_factory=list)  # (B, K, S) per step

    def trace(self, sentence: int, slot: int) -> tuple[list[int], list[np.ndarray]]:
        """Tokens and attention rows of the hypothesis in ``slot`` after the last step."""
        tokens, rows = [], []
        for t in range(len(self.tokens) - 1, -1, -1):
            tokens.append(int(self.tokens[t][sentence, slot]))
            rows.append(self.attention[t][sentence, slot])
            slot = int(self.parents[t][sentence, slot])
        return tokens[::-1], rows[::-1]


@dataclass
class Beams:
    """Live hypotheses of N sentences, K each."""

    sentence: np.ndarray  # (N,) original index of each sentence
    scores: np.ndarray  # (N, K) cumulative log-probabilities
    last: np.ndarray  # (N, K) each hypothesis' last token
    hidden: np.ndarray  # (N * K, H)
    missing: np.ndarray | None = None  # (N, K, P) sentinels each hypothesis still owes

    @property
    def rows(self) -> np.ndarray:
        """(N * K,) the sentence of every row."""
        return np.repeat(self.sentence, self.scores.shape[1])

    def keep(self, keep: np.ndarray) -> Beams:
        """Only the sentences where ``keep`` (N,) is True."""
        row_keep = np.repeat(keep, self.scores.shape[1])
        return Beams(self.sentence[keep], self.scores[keep], self.last[keep],
                     self.hidden[row_keep], None if self.missing is None else self.missing[keep])


def start(encoded: EncodedBatch, beam_size: int, bos: int,
          placeholders: Placeholders | None = None) -> Beams:
    B = encoded.mask.shape[0]
    scores = np.full((B, beam_size), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    return Beams(
        sentence=np.arange(B),
        scores=scores,
        last=np.full((B, beam_size), bos, dtype=np.int64),
        hidden=np.repeat(encoded.hidden, beam_size, axis=0),
        missing=None if placeholders is None
        else np.repeat(placeholders.required[:, None, :], beam_size, axis=1),
    )


def select(scores: np.ndarray, top_log_probs: np.ndarray, top_ids: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` best expansions of each sentence from its rows' candidates.

    Ranked as a search over every (beam, token) pair would rank them: by score, ties to the
    lower beam, then the lower token.

    :param scores: (N, K) live scores; top_log_probs / top_ids (N * K, k) per row
    :return: (scores, beam, token), each (N, k)
    """
    N, K = scores.shape
    candidates = (scores[:, :, None] + top_log_probs.reshape(N, K, -1)).reshape(N, -1)
    beam = np.repeat(np.arange(K), top_ids.shape[1])[None, :].repeat(N, axis=0)  # (N, K*k)
    token = top_ids.reshape(N, -1)
    order = np.lexsort((token, beam, -candidates), axis=1)[:, :k]  # (N, k)
    return (np.take_along_axis(candidates, order, axis=1),
            np.take_along_axis(beam, order, axis=1), np.take_along_axis(token, order, axis=1))


def advance(beams: Beams, model: StepModel, encoded: EncodedBatch, eos: int, alpha: float,
            history: History, finished: list[list[Hypothesis]],
            sentinel_ids: np.ndarray | None = None) -> Beams:
    """Expand every live hypothesis by one token, finish those ending in EOS, keep the K best.

    :param sentinel_ids: (P,) with ``beams.missing``: the placeholder constraint
    """
    N, K = beams.scores.shape
    B, S = encoded.mask.shape
    if beams.missing is not None and sentinel_ids is not None:
        constraint = penalty(beams.missing.reshape(N * K, -1), sentinel_ids, eos)
    else:
        constraint = TokenPenalty.none(N * K)
    out = model.step(beams.last.reshape(-1), beams.hidden, encoded, beams.rows, 2 * K,
                     constraint)
    top_scores, top_beam, top_token = select(beams.scores, out.top_log_probs, out.top_ids,
                                             2 * K)  # (N, 2K): K stay live after EOS
    attention = out.attention.reshape(N, K, S)
    t = len(history.tokens)

    # Only EOS among the K best candidates finishes a hypothesis (as in fairseq).
    for n, j in zip(*np.nonzero((top_token[:, :K] == eos) & np.isfinite(top_scores[:, :K])),
                    strict=True):
        b = int(top_beam[n, j])
        tokens, rows = history.trace(int(beams.sentence[n]), b)
        score = top_scores[n, j] / length_penalty(t + 1, alpha)
        finished[beams.sentence[n]].append(Hypothesis(
            tokens, float(score), np.stack([*rows, attention[n, b]]), ended=True))

    live = np.argsort(top_token == eos, axis=1, kind="stable")[:, :K]  # first K non-EOS
    beam = np.take_along_axis(top_beam, live, axis=1)  # (N, K)
    token = np.take_along_axis(top_token, live, axis=1)
    n = np.arange(N)[:, None]
    step_tokens, step_parents = np.zeros((B, K), np.int64), np.zeros((B, K), np.int64)
    step_attention = np.zeros((B, K, S), np.float32)
    step_tokens[beams.sentence], step_parents[beams.sentence] = token, beam
    step_attention[beams.sentence] = attention[n, beam]
    history.tokens.append(step_tokens)
    history.parents.append(step_parents)
    history.attention.append(step_attention)
    missing = None
    if beams.missing is not None and sentinel_ids is not None:
        missing = beams.missing[n, beam] - emitted(token.reshape(-1), sentinel_ids).reshape(
            N, K, -1)
    return Beams(
        sentence=beams.sentence,
        scores=np.take_along_axis(top_scores, live, axis=1),
        last=token,
        hidden=out.hidden.reshape(N, K, -1)[n, beam].reshape(N * K, -1),
        missing=missing,
    )


def finish_at_limit(beams: Beams, done: np.ndarray, alpha: float, history: History,
                    finished: list[list[Hypothesis]]) -> None:
    """Sentences out of steps keep their live hypotheses as unfinished results."""
    t = len(history.tokens)
    for n in np.nonzero(done)[0]:
        for b in np.nonzero(np.isfinite(beams.scores[n]))[0]:
            score = beams.scores[n, b] / length_penalty(t, alpha)
            tokens, rows = history.trace(int(beams.sentence[n]), int(b))
            finished[beams.sentence[n]].append(
                Hypothesis(tokens, float(score), np.stack(rows), ended=False))


def beam_search(
    model: StepModel,
    encoded: EncodedBatch,
    bos: int,
    eos: int,
    max_len: np.ndarray,
    beam_size: int = 4,
    n_best: int = 1,
    alpha: float = 0.6,
    placeholders: Placeholders | None = None,
) -> list[list[Hypothesis]]:
    """Return the ``n_best`` hypotheses of every sentence, best first.

    :param max_len: (B,) steps allowed per sentence, EOS included
    :param alpha: length penalty exponent; 0 ranks by raw log-probability
    :param placeholders: if given, keep every source sentinel and invent none
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size ({beam_size}), got {n_best}")
    B = encoded.mask.shape[0]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    history = History()
    beams = start(encoded, beam_size, bos, placeholders)
    sentinel_ids = None if placeholders is None else placeholders.sentinel_ids
    while beams.sentence.size:
        beams = advance(beams, model, encoded, eos, alpha, history, finished, sentinel_ids)
        complete = np.array([len(finished[s]) >= beam_size for s in beams.sentence])
        at_limit = ~complete & (len(history.tokens) >= max_len[beams.sentence])
        finish_at_limit(beams, at_limit, alpha, history, finished)
        if (complete | at_limit).any():
            beams = beams.keep(~(complete | at_limit))
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]
