import numpy as np

from service.alignment import align, group_words


def test_group_words_starts_a_word_at_each_marker_and_skips_eos() -> None:
    pieces = ["▁Save", "▁the", "▁docu", "ment", "</s>"]
    assert group_words(pieces) == [[0], [1], [2, 3]]


def test_alignment_from_a_known_attention_matrix() -> None:
    source = ["▁Save", "▁the", "▁docu", "ment", "</s>"]
    target = ["▁Dokument", "▁speicher", "n", "</s>"]
    attention = np.array([
        [0.05, 0.05, 0.50, 0.35, 0.05],  # Dokument <- docu+ment (0.85)
        [0.70, 0.10, 0.10, 0.05, 0.05],  # speicher <- Save
        [0.50, 0.10, 0.10, 0.10, 0.20],  # n        <- Save (same word as speicher)
        [0.00, 0.00, 0.00, 0.00, 1.00],  # </s> row is not a word
    ])
    links = align(source, target, attention)
    assert [(link.target_word, link.source_word) for link in links] == [
        ("Dokument", "document"), ("speichern", "Save")]
    assert [(link.target, link.source) for link in links] == [(0, 2), (1, 0)]
    assert links[0].weight == 0.85 and links[1].weight == 0.6


def test_empty_inputs_give_no_links() -> None:
    assert align([], [], np.zeros((0, 0))) == []
    assert align(["▁a", "</s>"], ["</s>"], np.ones((1, 2)) / 2) == []
