"""The restricted step graph and the shortlist table, on the shipped int8 decoder."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from service.bundle import DECODER_INPUTS, read_manifest
from service.decoding import Vocabulary
from service.shortlist import Shortlist, ShortlistError, restrict_output
from service.translator import Translator
from tests.conftest import DEFAULT_BUNDLE

R, B, S = 6, 3, 5


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def graphs() -> tuple[ort.InferenceSession, ort.InferenceSession, int]:
    manifest = read_manifest(DEFAULT_BUNDLE)
    decoder = onnx.load(str(DEFAULT_BUNDLE / manifest.variants["int8"]["decoder"]))
    return session(decoder), session(restrict_output(decoder)), manifest.architecture.vocab_size


def feeds(rng: np.random.Generator, penalty_ids: np.ndarray, k: int = 8
          ) -> dict[str, np.ndarray]:
    hidden = rng.standard_normal((R, 512)).astype(np.float32)
    values = (rng.integers(4, 1000, R), hidden,
              rng.standard_normal((B, S, 768)).astype(np.float32),
              rng.standard_normal((B, S, 256)).astype(np.float32),
              np.arange(S)[None, :] < np.array([5, 3, 1])[:, None],
              np.array([0, 0, 1, 1, 2, 2]),
              penalty_ids, np.where(np.arange(R)[:, None] % 2, -np.inf, 0.0).astype(
                  np.float32).repeat(penalty_ids.size, axis=1), np.array([k]))
    return dict(zip(DECODER_INPUTS, values, strict=True))


def restricted_feeds(inputs: dict[str, np.ndarray], vocab: Vocabulary
                     ) -> dict[str, np.ndarray]:
    return {**inputs, "vocab_ids": vocab.ids, "row_columns": vocab.columns,
            "penalty_columns": vocab.penalty_columns_of(inputs["penalty_ids"])}


def test_each_row_is_the_full_distribution_renormalized_over_its_own_candidates(graphs) -> None:
    full, short, V = graphs
    rng = np.random.default_rng(0)
    ids = np.union1d(rng.choice(V, 700, replace=False), [3, 5])  # 3: EOS, 5: penalized
    narrow = np.union1d(ids[::2], [3, 5])  # sentence 0 may use only every other candidate
    vocab = Vocabulary.build(ids, [narrow, ids, ids], [2, 2, 2], np.array([5]))
    inputs = feeds(rng, np.array([5]))  # odd rows: token 5 forbidden
    unpenalized = full.run(["log_probs"], {**inputs, "penalty_ids": np.zeros(0, np.int64),
                                           "penalties": np.zeros((R, 0), np.float32)})[0]
    top_ids, log_probs = short.run(["top_ids", "log_probs"], restricted_feeds(inputs, vocab))
    expected = vocab.restrict(unpenalized)  # (R, C) in the union's order
    expected[1::2, np.searchsorted(ids, 5)] = -np.inf
    for row in range(R):
        own = vocab.columns[row][vocab.columns[row] < ids.size]
        np.testing.assert_allclose(log_probs[row, : own.size], expected[row, own], atol=2e-5)
        assert np.isneginf(log_probs[row, own.size :]).all()  # padding
    np.testing.assert_array_equal(top_ids, ids[np.argsort(-expected, axis=1, kind="stable")[:, :8]])
    assert set(top_ids[:2].ravel()) <= set(narrow.tolist())


def test_every_candidate_is_the_full_graph(graphs) -> None:
    full, short, V = graphs
    rng = np.random.default_rng(1)
    inputs = feeds(rng, np.zeros(0, np.int64))
    want = full.run(["top_log_probs", "top_ids", "next_hidden"], inputs)
    everything = np.arange(V)
    vocab = Vocabulary.build(everything, [everything] * 3, [2, 2, 2], np.zeros(0, np.int64))
    got = short.run(["top_log_probs", "top_ids", "next_hidden"], restricted_feeds(inputs, vocab))
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_array_equal(got[2], want[2])


def test_a_row_does_not_see_the_union_it_is_scored_in(graphs) -> None:
    _, short, V = graphs
    rng = np.random.default_rng(2)
    own = np.sort(rng.choice(V, 300, replace=False))
    inputs = feeds(rng, np.zeros(0, np.int64))
    outputs = []
    for extra in (0, 200, 2000):  # more candidates of other sentences, and wider rows
        others = np.sort(rng.choice(V, max(extra, 1), replace=False))
        ids = np.union1d(own, others)
        vocab = Vocabulary.build(ids, [own, own, others], [2, 2, 2], np.zeros(0, np.int64))
        outputs.append(short.run(["top_log_probs", "top_ids"], restricted_feeds(inputs, vocab)))
    for top_lp, top_ids in outputs[1:]:
        np.testing.assert_array_equal(top_ids[:4], outputs[0][1][:4])
        np.testing.assert_array_equal(top_lp[:4], outputs[0][0][:4])


def test_a_graph_without_an_output_projection_is_refused() -> None:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(ShortlistError, match="LogSoftmax"):
        restrict_output(onnx.helper.make_model(graph))


def test_table_round_trip_and_checks(tmp_path: Path) -> None:
    table = Shortlist(np.array([[4, 7], [-1, -1], [7, -1]], np.int32), np.array([1, 3], np.int32))
    table.save(tmp_path / "s.npz")
    loaded = Shortlist.load(tmp_path / "s.npz", source_vocab=3, target_vocab=8)
    assert loaded.for_source([0, 2], forced=[5]).tolist() == [1, 3, 4, 5, 7]
    assert loaded.for_source([1]).tolist() == [1, 3]
    with pytest.raises(ShortlistError, match=r"0\.\.6"):
        Shortlist.load(tmp_path / "s.npz", source_vocab=3, target_vocab=7)
    with pytest.raises(ShortlistError, match="do not fit"):
        Shortlist.load(tmp_path / "s.npz", source_vocab=4, target_vocab=8)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / "bad.npz").write_bytes((tmp_path / "objects.npy").read_bytes())
    with pytest.raises(ShortlistError, match="not a shortlist"):
        Shortlist.load(tmp_path / "bad.npz", source_vocab=3, target_vocab=8)


def test_the_setting_needs_a_table_and_off_means_the_whole_vocabulary(tmp_path: Path) -> None:
    manifest = read_manifest(DEFAULT_BUNDLE)
    assert manifest.shortlist is not None and manifest.shortlist.default
    for name in manifest.files:
        if name != manifest.shortlist.file:
            (tmp_path / name).write_bytes((DEFAULT_BUNDLE / name).read_bytes())
    files = {n: h for n, h in manifest.files.items() if n != manifest.shortlist.file}
    (tmp_path / "manifest.json").write_text(
        replace(manifest, shortlist=None, files=files).to_json(), encoding="utf-8")
    with pytest.raises(ShortlistError, match="has no shortlist"):
        Translator(tmp_path, shortlist=True)
    assert Translator(tmp_path).shortlist is None
    assert Translator(DEFAULT_BUNDLE).shortlist is not None
    whole = Translator(DEFAULT_BUNDLE, shortlist=False)
    assert whole.shortlist is None and whole.model.restricted is None
