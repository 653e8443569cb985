"""The placeholder constraint as the step graph receives it: a (C,) int64 id list and an
(R, C) float32 penalty (the ONNX decoder's input types)."""

import numpy as np

from service.decoding.constraints import emitted, eos_as_owed, owed_before_the_limit, penalty

SENTINELS = np.array([7, 8, 9], np.int64)
EOS = 3


def test_owed_sentinels_stay_open_and_the_others_are_forbidden() -> None:
    missing = np.array([[1, 0, 0],   # <ph0> still owed
                        [0, 0, 0],   # nothing owed: every sentinel forbidden
                        [0, 2, 1]])
    p = penalty(missing, SENTINELS, EOS)
    assert p.token_ids.dtype == np.int64 and p.token_ids.tolist() == [7, 8, 9, EOS]
    assert p.values.dtype == np.float32 and p.values.shape == (3, 4)
    inf = -np.inf
    assert p.values.tolist() == [[0, inf, inf, 0], [inf, inf, inf, 0], [inf, 0, 0, 0]]


def test_eos_turns_into_the_first_owed_sentinel() -> None:
    ids = np.array([[EOS, 5, 7, 6],    # owes <ph0> (7): EOS's -0.1 beats its own -0.9
                    [EOS, 5, 6, 4],    # owes nothing: EOS stays
                    [5, EOS, 4, 6],    # owes <ph1> and <ph2>: the first, 8, takes EOS's place
                    [5, 6, 4, 2]])     # owes, but no EOS among its best
    log_probs = np.array([[-0.1, -0.5, -0.9, -2.0], [-0.1, -0.5, -0.9, -2.0],
                          [-0.3, -0.4, -1.0, -3.0], [-0.3, -0.4, -1.0, -3.0]], np.float32)
    missing = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1], [1, 0, 0]])
    lp, out = eos_as_owed(log_probs, ids, missing, SENTINELS, EOS)
    inf = -np.inf
    assert out.tolist() == [[7, 5, 6, 7], [EOS, 5, 6, 4], [5, 8, 4, 6], [5, 6, 4, 2]]
    np.testing.assert_array_equal(lp, np.array([[-0.1, -0.5, -2.0, inf], log_probs[1],
                                                log_probs[2], log_probs[3]], np.float32))


def test_emitted_counts_each_rows_sentinel_as_an_integer() -> None:
    counts = emitted(np.array([8, 5, 7, EOS]), SENTINELS)
    assert counts.dtype == np.int64
    assert counts.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_a_row_out_of_steps_may_only_emit_what_it_owes() -> None:
    ids = np.array([[5, 6, 4], [5, 6, 4], [5, 6, 4], [5, 6, 4]])
    log_probs = np.array([[-0.2, -0.5, -0.9]] * 4, np.float32)
    missing = np.array([[0, 1, 1],   # owes 2 with 2 steps left: <ph1> (8) now
                        [0, 1, 1],   # owes 2 with 3 left: free
                        [0, 0, 0],   # owes nothing with 1 left: free
                        [1, 0, 0]])  # owes 1 with 1 left: <ph0> (7)
    lp, out = owed_before_the_limit(log_probs, ids, missing, np.array([2, 3, 1, 1]), SENTINELS)
    inf = -np.inf
    assert out[[0, 3], 0].tolist() == [8, 7] and out[1:3].tolist() == ids[1:3].tolist()
    np.testing.assert_array_equal(lp, np.array([[-0.2, inf, inf], log_probs[1], log_probs[2],
                                                [-0.2, inf, inf]], np.float32))
