"""The encoder as the service runs it: one bidirectional GRU (service.encoder_graph) with the
file's numbers, over runs of sentences of similar lengths (Translator.encode_runs)."""

from __future__ import annotations

import itertools
import logging
import random
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from service import runtime
from service.bundle import read_manifest
from service.encoder_graph import fuse_bidirectional, same_encoding
from service.translator import RUN_OVERHEAD_STEPS, Translator, encoder_runs
from tests.conftest import ROOT

BUNDLES = sorted(p for p in (ROOT / "models").iterdir() if (p / "manifest.json").exists())
TEXTS = [line.split("\t")[0] for line in (Path(__file__).parents[1] / "data" /
         "ui-strings.tsv").read_text(encoding="utf-8").splitlines()[:48]]


def shipped(bundle: Path, part: str) -> Path:
    manifest = read_manifest(bundle)
    return bundle / manifest.variants[manifest.resolve_variant("auto")][part]


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("bundle", BUNDLES, ids=[p.name for p in BUNDLES])
def test_shipped_encoders_fuse_to_the_same_numbers(bundle: Path) -> None:
    translator = Translator(bundle)
    model = onnx.load(str(shipped(bundle, "encoder")))
    fused = fuse_bidirectional(model)
    assert fused is not None
    grus = [n for n in fused.graph.node if n.op_type == "GRU"]
    assert len(grus) == 1 and len(fused.graph.node) < len(model.graph.node) // 3
    assert translator.model.fused_encoder  # what the service runs

    # Real sentences in one padded batch: every real position and every final state equal.
    src, lengths = translator.encode([r.ids for r in translator.prepare(TEXTS)])
    feeds = {"src_ids": src, "src_lengths": lengths}
    before, after = session(model).run(None, feeds), session(fused).run(None, feeds)
    real = np.arange(src.shape[1])[None, :] < lengths[:, None]
    for a, b in zip(before, after, strict=True):
        assert a.shape == b.shape
        assert np.array_equal(a[real] if a.ndim == 3 else a, b[real] if b.ndim == 3 else b)


def test_a_fused_graph_with_other_numbers_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    bundle = BUNDLES[0]

    def off_by_a_little(model: onnx.ModelProto) -> onnx.ModelProto | None:
        fused = fuse_bidirectional(model)
        assert fused is not None
        [w] = [t for t in fused.graph.initializer if t.name.endswith("/R")]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(1.001), w.name))
        return fused

    model = onnx.load(str(shipped(bundle, "encoder")))
    assert not same_encoding(session(model), session(off_by_a_little(model)), model, 0)
    monkeypatch.setattr(runtime, "fuse_bidirectional", off_by_a_little)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        translator = Translator(bundle)
    assert not translator.model.fused_encoder
    assert "running the file's graph" in caplog.text


def test_a_fused_graph_that_does_not_run_is_not_used(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    def unrunnable(model: onnx.ModelProto) -> onnx.ModelProto | None:
        fused = fuse_bidirectional(model)
        assert fused is not None
        [gru] = [n for n in fused.graph.node if n.op_type == "GRU"]
        gru.attribute.append(onnx.helper.make_attribute("clip", -1.0))  # ORT refuses it
        return fused

    monkeypatch.setattr(runtime, "fuse_bidirectional", unrunnable)
    with caplog.at_level(logging.WARNING, logger="service.runtime"):
        translator = Translator(BUNDLES[0])
    assert not translator.model.fused_encoder
    assert "does not run here" in caplog.text
    assert translator.translate(["Open the file"])[0].best.text  # the file's graph serves


def test_other_graphs_are_left_alone() -> None:
    decoder = onnx.load(str(shipped(BUNDLES[0], "decoder")))
    assert fuse_bidirectional(decoder) is None


def runs_cost(lengths: list[int], runs: list[list[int]]) -> int:
    return sum(RUN_OVERHEAD_STEPS + max(lengths[i] for i in r) * (1 + len(r)) for r in runs)


def test_encoder_runs_are_the_cheapest_cuts() -> None:
    assert encoder_runs([7]) == [[0]] and encoder_runs([5, 5, 5]) == [[0, 1, 2]]
    assert encoder_runs([8] * 7 + [38]) == [[7], list(range(7))]  # the long one alone
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.choice([2, 3, 5, 8, 13, 21, 34, 55]) for _ in range(rng.randint(1, 9))]
        runs = encoder_runs(lengths)
        assert sorted(i for r in runs for i in r) == list(range(len(lengths)))
        # every way of cutting the sentences sorted by length costs at least as much
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        for cuts in itertools.product([False, True], repeat=len(order) - 1):
            other, run = [], [order[0]]
            for cut, i in zip(cuts, order[1:], strict=True):
                if cut:
                    other.append(run)
                    run = []
                run.append(i)
            assert runs_cost(lengths, runs) <= runs_cost(lengths, [*other, run])


def test_rows_encoded_in_runs_are_encoded_as_in_one() -> None:
    translator = Translator(BUNDLES[0])
    rows = translator.prepare([*TEXTS[:6], " ".join(TEXTS[6:12])])
    runs = translator.encode_runs(rows)
    assert len(runs) > 1
    assert sorted(i for at, _ in runs for i in at) == list(range(len(rows)))
    one = translator.model.encode(*translator.encode([r.ids for r in rows]))
    for at, encoded in runs:
        width = encoded.mask.shape[1]
        assert np.array_equal(encoded.mask, one.mask[at, :width])
        assert not one.mask[at, width:].any()
        assert np.array_equal(encoded.hidden, one.hidden[at])
        for name in ("outputs", "keys"):
            mine, theirs = getattr(encoded, name), getattr(one, name)[at, :width]
            assert np.array_equal(mine[encoded.mask], theirs[encoded.mask])
