"""The previous beam search, kept as a test oracle: it scores every (beam, token) pair from
full log-probabilities and copies the history each step. The production search
(``service.decoding.beam``) must return exactly what this returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.decoding.constraints import emitted
from service.decoding.types import EncodedBatch, Hypothesis, top_k_ids
from tests.service.decoding.toy import ToyModel


@dataclass(frozen=True)
class Placeholders:
    """The placeholder constraint of a static batch, as the searches here take it."""

    sentinel_ids: np.ndarray  # (P,) vocabulary ids of <ph0>..<phP-1>
    required: np.ndarray  # (B, P) how often each sentinel occurs in each source


def constrain(log_probs: np.ndarray, missing: np.ndarray, sentinel_ids: np.ndarray, eos: int,
              steps_left: np.ndarray) -> np.ndarray:
    """Sentinels not owed get -inf; where one is owed, the first owed one scores the better
    of itself and EOS, and EOS -inf; where no more steps are left (``steps_left``, per row)
    than sentinels owed, that sentinel alone, with the row's best score."""
    out = log_probs.copy()
    out[:, sentinel_ids] = np.where(missing > 0, out[:, sentinel_ids], -np.inf)
    owing = np.flatnonzero((missing > 0).any(axis=1))
    first = sentinel_ids[(missing[owing] > 0).argmax(axis=1)]
    out[owing, first] = np.maximum(out[owing, first], out[owing, eos])
    out[owing, eos] = -np.inf
    late = missing[owing].sum(axis=1) >= steps_left[owing]
    best = out[owing[late]].max(axis=1)
    out[owing[late]] = -np.inf
    out[owing[late], first[late]] = best
    return out


def length_penalty(length: int | np.ndarray, alpha: float) -> np.ndarray | float:
    return ((5.0 + length) / 6.0) ** alpha


@dataclass
class Beams:
    """Live hypotheses of N sentences, K each."""

    sentence: np.ndarray  # (N,) original index of each sentence
    scores: np.ndarray  # (N, K) cumulative log-probabilities
    tokens: np.ndarray  # (N, K, t) generated ids so far
    attention: np.ndarray  # (N, K, t, S) attention of every step so far
    hidden: np.ndarray  # (N * K, H)
    rows: np.ndarray  # (N * K,) the sentence of each row
    missing: np.ndarray | None = None  # (N, K, P) sentinels each hypothesis still owes

    def keep(self, keep: np.ndarray) -> Beams:
        """Only the sentences where ``keep`` (N,) is True."""
        K = self.scores.shape[1]
        row_keep = np.repeat(keep, K)
        return Beams(self.sentence[keep], self.scores[keep], self.tokens[keep],
                     self.attention[keep], self.hidden[row_keep], self.rows[row_keep],
                     None if self.missing is None else self.missing[keep])


def start(encoded: EncodedBatch, beam_size: int,
          placeholders: Placeholders | None = None) -> Beams:
    B, S = encoded.mask.shape
    scores = np.full((B, beam_size), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    rows = np.repeat(np.arange(B), beam_size)
    return Beams(
        sentence=np.arange(B),
        scores=scores,
        tokens=np.zeros((B, beam_size, 0), dtype=np.int64),
        attention=np.zeros((B, beam_size, 0, S), dtype=np.float32),
        hidden=encoded.hidden[rows],
        rows=rows,
        missing=None if placeholders is None
        else np.repeat(placeholders.required[:, None, :], beam_size, axis=1),
    )


def advance(
    beams: Beams,
    log_probs: np.ndarray,
    hidden: np.ndarray,
    attention: np.ndarray,
    eos: int,
    alpha: float,
    finished: list[list[Hypothesis]],
    steps_left: np.ndarray,
    sentinel_ids: np.ndarray | None = None,
) -> Beams:
    """Expand every live hypothesis by one token, finish those ending in EOS, keep the K best.

    :param log_probs: (N * K, V) from the step model; hidden (N * K, H); attention (N * K, S)
    :param steps_left: (N,) steps each sentence may still take, this one included
    :param sentinel_ids: (P,) with ``beams.missing``: the placeholder constraint
    """
    N, K = beams.scores.shape
    V = log_probs.shape[1]
    if beams.missing is not None and sentinel_ids is not None:
        log_probs = constrain(log_probs, beams.missing.reshape(N * K, -1), sentinel_ids, eos,
                              np.repeat(steps_left, K))
    S = attention.shape[1]
    t = beams.tokens.shape[2]
    expanded = (beams.scores[:, :, None] + log_probs.reshape(N, K, V)).reshape(N, K * V)
    top = top_k_ids(expanded, 2 * K)  # (N, 2K): enough to keep K live after EOS
    top_scores = np.take_along_axis(expanded, top, axis=1)
    top_beam, top_token = top // V, top % V
    attention = attention.reshape(N, K, S)

    # Only EOS among the K best candidates finishes a hypothesis (as in fairseq).
    for n, j in zip(*np.nonzero((top_token[:, :K] == eos) & np.isfinite(top_scores[:, :K])),
                    strict=True):
        b = top_beam[n, j]
        steps = np.concatenate([beams.attention[n, b], attention[n, b][None]], axis=0)
        score = top_scores[n, j] / length_penalty(t + 1, alpha)
        finished[beams.sentence[n]].append(Hypothesis(beams.tokens[n, b].tolist(), float(score),
                                                      steps, ended=True))

    live = np.argsort(top_token == eos, axis=1, kind="stable")[:, :K]  # first K non-EOS
    beam = np.take_along_axis(top_beam, live, axis=1)  # (N, K)
    token = np.take_along_axis(top_token, live, axis=1)
    n = np.arange(N)[:, None]
    missing = None
    if beams.missing is not None and sentinel_ids is not None:
        missing = beams.missing[n, beam] - emitted(token.reshape(-1), sentinel_ids).reshape(
            N, K, -1)
    return Beams(
        sentence=beams.sentence,
        scores=np.take_along_axis(top_scores, live, axis=1),
        tokens=np.concatenate([beams.tokens[n, beam], token[:, :, None]], axis=2),
        attention=np.concatenate([beams.attention[n, beam], attention[n, beam][:, :, None]],
                                 axis=2),
        hidden=hidden.reshape(N, K, -1)[n, beam].reshape(N * K, -1),
        rows=beams.rows,  # every row of a sentence holds the same source
        missing=missing,
    )


def finish_at_limit(beams: Beams, done: np.ndarray, alpha: float,
                    finished: list[list[Hypothesis]]) -> None:
    """Sentences out of steps keep their live hypotheses as unfinished results."""
    t = beams.tokens.shape[2]
    for n in np.nonzero(done)[0]:
        for b in np.nonzero(np.isfinite(beams.scores[n]))[0]:
            score = beams.scores[n, b] / length_penalty(t, alpha)
            finished[beams.sentence[n]].append(
                Hypothesis(beams.tokens[n, b].tolist(), float(score), beams.attention[n, b],
                           ended=False))


def reference_beam_search(
    model: ToyModel,
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
    beams = start(encoded, beam_size, placeholders)
    sentinel_ids = None if placeholders is None else placeholders.sentinel_ids
    while beams.sentence.size:
        N, K = beams.scores.shape
        prev = beams.tokens[:, :, -1].reshape(-1) if beams.tokens.shape[2] else np.full(N * K, bos)
        log_probs, hidden, attention = model.step_log_probs(prev.astype(np.int64), beams.hidden,
                                                            encoded, beams.rows)
        steps_left = max_len[beams.sentence] - beams.tokens.shape[2]
        beams = advance(beams, log_probs, hidden, attention, eos, alpha, finished, steps_left,
                        sentinel_ids)
        complete = np.array([len(finished[s]) >= beam_size for s in beams.sentence])
        at_limit = ~complete & (beams.tokens.shape[2] >= max_len[beams.sentence])
        finish_at_limit(beams, at_limit, alpha, finished)
        if (complete | at_limit).any():
            beams = beams.keep(~(complete | at_limit))
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]
