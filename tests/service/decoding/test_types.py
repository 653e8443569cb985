"""The small pieces every search step relies on: top-k order, length limits and penalties."""

import numpy as np
import pytest

from service.decoding import Engine, Search
from service.decoding.beam import length_penalty
from service.decoding.types import max_lengths, top_k_ids
from service.scheduler import sentence_cost
from tests.service.decoding.toy import ToyModel


def test_top_k_is_best_first_and_ties_go_to_the_lower_index() -> None:
    scores = np.array([[0.5, 2.0, 2.0, -1.0, 2.0, 0.5, 0.5, 0.5],
                       [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]], np.float32)
    assert top_k_ids(scores, 5).tolist() == [[1, 2, 4, 0, 5], [0, 1, 2, 3, 4]]
    assert top_k_ids(scores, 20).shape == (2, 8)  # k larger than the row: every column
    many = np.zeros((3, 257), np.float32)  # ties across a long row, as a real vocabulary
    many[:, 200] = 1.0
    assert top_k_ids(many, 4).tolist() == [[200, 0, 1, 2]] * 3


def test_length_limits_are_integers_capped() -> None:
    limits = max_lengths(np.array([1, 4, 10, 100]), 1.25, cap=60, extra=5)
    assert limits.dtype == np.int64 and limits.tolist() == [6, 10, 17, 60]


@pytest.mark.parametrize(("length", "alpha"), [(4, 0.6), (9, 1.0), (3, 0.0)])
def test_length_penalties_of_both_rules(length: int, alpha: float) -> None:
    assert length_penalty(length, alpha) == pytest.approx(((5 + length) / 6) ** alpha)
    assert length_penalty(length, alpha, "opennmt") == pytest.approx((length + 1) ** alpha)
    assert length_penalty(length, 0.5, "opennmt") == pytest.approx((length + 1) ** 0.5)


def test_the_engine_counts_steps_and_refuses_a_search_count_mismatch() -> None:
    model = ToyModel(vocab=14, seed=3)
    engine = Engine(model, 0, 1)
    with pytest.raises(ValueError, match=r"^1 searches for 2 sentences$"):
        engine.admit(model.encode([3, 4]), [Search(5, 1)])
    engine.admit(model.encode([3, 4]), [Search(20, 1), Search(20, 2)])
    engine.step()
    engine.step()
    assert engine.steps == 2


def test_a_search_names_the_valid_rules_and_its_cost_is_rows_times_tokens() -> None:
    with pytest.raises(ValueError, match=r"^unknown beam rule 'marian': valid are gnmt, opennmt$"):
        Search(5, 2, rule="marian")
    assert sentence_cost(12, 4) == 48 and sentence_cost(7, 1) == 7
