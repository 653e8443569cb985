"""The placeholder constraint as the step graph receives it: a (C,) int64 id list and an
(R, C) float32 penalty (the ONNX decoder's input types)."""

import numpy as np

from service.decoding.constraints import emitted, penalty

SENTINELS = np.array([7, 8, 9], np.int64)
EOS = 3


def test_owed_sentinels_stay_open_and_eos_waits_for_them() -> None:
    missing = np.array([[1, 0, 0],   # <ph0> still owed: EOS forbidden
                        [0, 0, 0],   # nothing owed: every sentinel forbidden, EOS allowed
                        [0, 2, 1]])
    p = penalty(missing, SENTINELS, EOS)
    assert p.token_ids.dtype == np.int64 and p.token_ids.tolist() == [7, 8, 9, EOS]
    assert p.values.dtype == np.float32 and p.values.shape == (3, 4)
    inf = -np.inf
    assert p.values.tolist() == [[0, inf, inf, inf], [inf, inf, inf, 0], [inf, 0, 0, inf]]


def test_emitted_counts_each_rows_sentinel_as_an_integer() -> None:
    counts = emitted(np.array([8, 5, 7, EOS]), SENTINELS)
    assert counts.dtype == np.int64
    assert counts.tolist() == [[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
