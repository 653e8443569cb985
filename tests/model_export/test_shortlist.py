import numpy as np

from model_export.shortlist import build_shortlist, coverage, ibm1

# A toy language pair: source word w (ids 10-29) translates to target word w + 100; every
# sentence also carries source "the" (5) and target "der" (6), which do not align one-to-one.
V = 200
EOS, SENTINEL = 3, 4


def corpus(n: int = 400, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        words = rng.choice(np.arange(10, 30), size=rng.integers(1, 5), replace=False)
        source = [5, *words.tolist()]
        target = [6, *(w + 100 for w in rng.permutation(words).tolist())]
        pairs.append((source, target))
    return pairs


def test_ibm1_finds_each_words_translation_despite_co_occurrence() -> None:
    src, tgt, prob = ibm1(corpus(), V)
    for word in range(10, 30):
        mine = src == word
        assert tgt[mine][np.argmax(prob[mine])] == word + 100
        assert np.isclose(prob[mine].sum(), 1.0)


def test_shortlist_lists_translations_first_and_always_the_fixed_pieces() -> None:
    pairs = corpus()
    shortlist = build_shortlist(pairs, V, always=[EOS, SENTINEL], top=2, frequent=1)
    assert shortlist.candidates.shape == (V, 2)
    for word in range(10, 30):
        assert shortlist.candidates[word, 0] == word + 100
    assert (shortlist.candidates[150] == -1).all()  # never seen: nothing listed
    assert shortlist.always.tolist() == [EOS, SENTINEL, 6]  # "der", the most frequent
    allowed = shortlist.for_source([5, 12, 17])
    assert {112, 117, EOS, SENTINEL, 6} <= set(allowed.tolist())
    assert len(allowed) <= 3 * 2 + 3 and (np.diff(allowed) > 0).all()
    held_out = corpus(100, seed=1)
    recall, size = coverage(shortlist.for_source, held_out)
    assert recall == 1.0 and size < V / 10
