"""Placeholder constraints: every source sentinel appears in the output, no other does.

A small model sometimes drops or invents a placeholder (``<ph0>`` standing for ``%s``).
During search, a sentinel absent from the source (or already emitted as often as the source
has it) gets probability 0. While one is still owed, EOS stands for it: a hypothesis that
would end emits the first sentinel it owes instead, with EOS's probability if that is
higher (:func:`eos_as_owed`), so a model that "forgets" a closing tag puts it last instead
of rambling on to the length limit. One that rambles anyway (a loop of one piece) emits what
it owes in its last steps (:func:`owed_before_the_limit`): no output loses a placeholder.
"""

from __future__ import annotations

import numpy as np

from service.decoding.types import TokenPenalty


def penalty(missing: np.ndarray, sentinel_ids: np.ndarray, eos: int) -> TokenPenalty:
    """The constraint as a step penalty: a sentinel no longer owed (or absent from the
    source) gets -inf; everything else, EOS included, is untouched.

    :param missing: (R, P) how often each sentinel must still be emitted, per row
    """
    owed = missing > 0  # (R, P)
    values = np.concatenate([np.where(owed, 0.0, -np.inf), np.zeros((owed.shape[0], 1))],
                            axis=1)
    return TokenPenalty(np.append(sentinel_ids, eos).astype(np.int64), values.astype(np.float32))


def eos_as_owed(top_log_probs: np.ndarray, top_ids: np.ndarray, missing: np.ndarray,
                sentinel_ids: np.ndarray, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best tokens with EOS, where the row still owes a sentinel, turned into the
    first sentinel it owes (scored as the better of the two; the other entry gets -inf),
    best first again.

    The same as scoring that sentinel max(its log-probability, EOS's) and EOS -inf over the
    whole vocabulary, when rows bring one token more than the search takes.

    :param top_log_probs: (R, k), top_ids (R, k), missing (R, P)
    """
    owed = missing > 0
    rows = np.flatnonzero(owed.any(axis=1) & (top_ids == eos).any(axis=1))
    if not rows.size:
        return top_log_probs, top_ids
    log_probs, ids = top_log_probs.copy(), top_ids.copy()
    first = sentinel_ids[owed[rows].argmax(axis=1)]
    for r, sentinel in zip(rows.tolist(), first.tolist(), strict=True):
        at = int(np.flatnonzero(ids[r] == eos)[0])
        same = np.flatnonzero(ids[r] == sentinel)
        if same.size:
            log_probs[r, at] = max(log_probs[r, at], log_probs[r, same[0]])
            log_probs[r, same[0]] = -np.inf
        ids[r, at] = sentinel
        order = np.lexsort((ids[r], -log_probs[r]))  # best first, ties to the lower id
        log_probs[r], ids[r] = log_probs[r, order], ids[r, order]
    return log_probs, ids


def emitted(tokens: np.ndarray, sentinel_ids: np.ndarray) -> np.ndarray:
    """(R,) tokens -> (R, P) one-hot of which sentinel each token is (zeros otherwise)."""
    return (tokens[:, None] == sentinel_ids[None, :]).astype(np.int64)


def owed_before_the_limit(top_log_probs: np.ndarray, top_ids: np.ndarray, missing: np.ndarray,
                          steps_left: np.ndarray, sentinel_ids: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Rows with no more steps left than sentinels owed may only emit the first one they owe,
    scored as their best token (the other entries get -inf); the others are unchanged.

    :param top_log_probs: (R, k), top_ids (R, k), missing (R, P)
    :param steps_left: (R,) steps the row may still take, this one included
    """
    owed = missing.sum(axis=1)
    rows = np.flatnonzero((owed > 0) & (owed >= steps_left))
    if not rows.size:
        return top_log_probs, top_ids
    log_probs, ids = top_log_probs.copy(), top_ids.copy()
    ids[rows, 0] = sentinel_ids[(missing[rows] > 0).argmax(axis=1)]
    log_probs[rows, 0] = top_log_probs[rows].max(axis=1)
    log_probs[rows, 1:] = -np.inf
    return log_probs, ids
