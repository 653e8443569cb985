"""Imported OpenNMT-py checkpoints translate as onmt_translate does (its outputs were
recorded by the real tool: scripts/opennmt-fixtures.sh), through the library and over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from model_export.corpus import load_split
from model_export.opennmt import read_checkpoint
from service.translator import DecodeOptions, Translator
from tests.integration.conftest import start_server

FIXTURES = Path(__file__).parents[1] / "data" / "opennmt"
MODELS = ("gru", "lstm", "shared")
NEAR_TIE = 0.01  # nats per token: far above float rounding, far below a different choice
PAIRS = load_split(FIXTURES / "raw-test.tsv")
SOURCES = [s for s, _ in PAIRS]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from model_export.__main__ import main

    out, calibration = {}, tmp_path_factory.mktemp("calibration") / "sources.txt"
    calibration.write_text("\n".join(SOURCES[:100]) + "\n", encoding="utf-8")
    for name in MODELS:
        out[name] = tmp_path_factory.mktemp(name)
        main(["import-opennmt", str(FIXTURES / f"{name}.pt"), "--tokenizer",
              str(FIXTURES / "spm.model"), "--out", str(out[name]), "--source-lang", "en",
              "--target-lang", "de", "--calibration", str(calibration)])
    return out


def served_pieces(translator: Translator, beam_size: int) -> list[str]:
    """Each output as OpenNMT-py prints it: target tokens joined by spaces."""
    rows = translator.prepare(SOURCES)
    found = translator.translate_running(rows, DecodeOptions(beam_size=beam_size))
    return [" ".join(translator.tokenizer.piece(i) for i in t.best.token_ids) for t in found]


def recorded(name: str, decoding: str) -> list[str]:
    """onmt_translate's outputs for SOURCES, as the fixture script recorded them."""
    return (FIXTURES / f"{name}.{decoding}.txt").read_text("utf-8").splitlines()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("decoding", "beam_size"), [("greedy", 1), ("beam4", 4)])
def test_fp32_translations_equal_onmt_translate(bundles: dict[str, Path], name: str,
                                                decoding: str, beam_size: int) -> None:
    """Every one of the 200 sentences, as the README says (on this machine). On another CPU
    a sentence may come out differently only where the two outputs are a near-tie: each as
    probable as the other (length-normalized as the beam ranks them) within NEAR_TIE."""
    expected = recorded(name, decoding)
    translator = Translator(bundles[name], "fp32")
    got = served_pieces(translator, beam_size)
    differ = [i for i, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    ties = []
    for i in differ:
        ids = [[translator.tokenizer.target_id(p) for p in out.split()]
               for out in (got[i], expected[i])]
        raw = translator.log_probability([SOURCES[i]] * 2, ids)
        ranked = [r / (len(t) + 1) if beam_size > 1 else r for r, t in zip(raw, ids, strict=True)]
        ties.append(abs(ranked[0] - ranked[1]) <= NEAR_TIE)
    assert all(ties), [(SOURCES[i], got[i], expected[i]) for i in differ][:3]


@pytest.mark.parametrize("name", MODELS)
def test_the_bundle_keeps_the_checkpoints_vocabulary_and_onmt_translate_defaults(
        bundles: dict[str, Path], name: str) -> None:
    checkpoint = read_checkpoint(FIXTURES / f"{name}.pt")
    manifest = json.loads((bundles[name] / "manifest.json").read_text())
    vocab = json.loads((bundles[name] / "vocab.json").read_text())
    assert (vocab["src"], vocab["tgt"]) == (checkpoint.src_vocab, checkpoint.tgt_vocab)
    assert manifest["tokenizer"]["type"] == "sentencepiece+vocabulary"
    assert manifest["tokenizer"]["source_eos"] is False
    assert manifest["placeholders"] is False
    assert manifest["decoding"] == {"length_penalty": 1.0, "beam_rule": "opennmt",
                                    "max_length_ratio": 1.25, "max_length_extra": 5}
    assert manifest["architecture"]["family"] == "opennmt-py"
    assert sorted(manifest["variants"]) == ["fp32", "int8"]
    assert manifest["parity"]["log_probs"] < 1e-4
    card = (bundles[name] / "README.md").read_text()
    assert "(from: opennmt-py)" in card and "opennmt beam rule" in card


def test_a_source_token_the_checkpoint_never_saw_is_unk(bundles: dict[str, Path]) -> None:
    translator = Translator(bundles["gru"], "fp32")
    [row] = translator.prepare(["Ωμέγα"])
    assert translator.special.unk in row.ids
    assert translator.special.eos not in row.ids  # OpenNMT-py sources have no EOS


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_an_imported_sentence_translates_the_same_alone_and_in_a_batch(
        bundles: dict[str, Path], variant: str) -> None:
    translator = Translator(bundles["lstm"], variant)
    rows = translator.prepare(SOURCES[:40])
    together = translator.translate_running(rows, DecodeOptions(beam_size=4))
    for row, batched in zip(rows[::8], together[::8], strict=True):
        [alone] = translator.translate_running([row], DecodeOptions(beam_size=4))
        assert alone.best.token_ids == batched.best.token_ids
        assert alone.best.score == pytest.approx(batched.best.score, abs=1e-5)


@pytest.fixture(scope="module")
def onmt_server(bundles: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    server = start_server(tmp_path_factory.mktemp("server"), bundles["gru"],
                          SERVICE_VARIANT="fp32")
    try:
        server.wait("/health/ready", 200)
        yield server.url
    finally:
        server.stop()


def test_served_over_http_with_attention_like_the_library(onmt_server: str,
                                                          bundles: dict[str, Path]) -> None:
    expected = recorded("gru", "beam4")  # what onmt_translate printed
    source_pieces = (FIXTURES / "src-test.txt").read_text("utf-8").splitlines()
    texts = SOURCES[:8]
    response = httpx.post(onmt_server + "/translate", json={
        "text": texts, "beam_size": 4, "return_attention": True, "return_alignment": True},
        timeout=60)
    assert response.status_code == 200, response.text
    for out, want, pieces in zip(response.json()["translations"], expected[:8],
                                 source_pieces[:8], strict=True):
        assert " ".join(out["target_tokens"][:-1]) == want  # the last token is </s>
        assert " ".join(out["source_tokens"]) == pieces  # what onmt_translate read
        attention = np.array(out["attention"])
        assert attention.shape == (len(out["target_tokens"]), len(out["source_tokens"]))
        assert np.allclose(attention.sum(axis=1), 1.0, atol=5e-4 * attention.shape[1])  # rounded
        assert out["text"]
        words = len(out["text"].split())
        assert out["alignment"] and all(0 <= link["target"] < words
                                        for link in out["alignment"])


def test_text_that_looks_like_a_sentinel_is_left_alone(bundles: dict[str, Path]) -> None:
    """Placeholders are off for imported models: ``<ph0>`` is text like any other, kept in
    the output if the model writes it (its SentencePiece model has the piece)."""
    translator = Translator(bundles["gru"], "fp32")
    [out] = translator.translate(["The classification label of this document is <ph0>."])
    pieces = [translator.tokenizer.piece(i) for i in out.best.token_ids]
    assert ("<ph0>" in out.best.text) == ("<ph0>" in pieces)
    assert "<ph0>" in pieces


def test_a_2x_checkpoint_is_served_with_2x_defaults(tmp_path: Path, bundles: dict[str, Path]
                                                    ) -> None:
    """OpenNMT-py 2.x's onmt_translate: no length penalty, at most 100 tokens."""
    import torch

    from model_export.opennmt import import_opennmt
    from tests.model_export.test_opennmt import as_2x

    as_2x(torch.load(FIXTURES / "gru.pt", weights_only=False), tmp_path / "v2.pt")
    manifest = import_opennmt(tmp_path / "v2.pt", FIXTURES / "spm.model", tmp_path / "bundle")
    assert manifest.decoding == {"length_penalty": 0.0, "beam_rule": "opennmt",
                                 "max_length_ratio": 0.0, "max_length_extra": 100}
    assert manifest.max_target_tokens == 100
    expected = recorded("gru", "greedy")  # what 3.x's onmt_translate printed
    translator = Translator(tmp_path / "bundle", "fp32")
    got = served_pieces(translator, 1)
    limits = [translator.search(r, DecodeOptions(beam_size=1)).max_len
              for r in translator.prepare(SOURCES)]
    assert set(limits) == {100}
    # Greedy choices do not depend on the length rule until a limit cuts one short.
    ended = [i for i, e in enumerate(expected) if len(e.split()) < int(
        len(translator.prepare([SOURCES[i]])[0].ids) * 1.25) + 5]
    assert len(ended) > 150
    assert all(got[i] == expected[i] for i in ended)


def test_a_model_trained_on_masked_text_can_keep_placeholders(tmp_path: Path) -> None:
    """The fixtures saw the project's <phN> sentinels (their data was masked): with
    --placeholders the bundle masks, constrains and restores them like the default model."""
    from model_export.__main__ import main

    main(["import-opennmt", str(FIXTURES / "gru.pt"), "--tokenizer", str(FIXTURES / "spm.model"),
          "--out", str(tmp_path), "--placeholders"])
    translator = Translator(tmp_path, "fp32")
    assert translator.manifest.placeholders and translator.sentinel_ids.size
    [out] = translator.translate(["Could not save the file %s."])
    assert "%s" in out.best.text and "<ph" not in out.best.text


@pytest.mark.parametrize("name", MODELS)
def test_the_restricted_step_of_an_imported_decoder_is_its_full_step(
        bundles: dict[str, Path], name: str) -> None:
    """OpenNMT-py's generator (a Linear with a bias, shared or not with the embeddings) and
    its int8 variant: with every target id a candidate, the restricted step (the vocabulary
    shortlist's graph) finds the full step's top tokens and scores."""
    from service.bundle import read_manifest
    from service.decoding import TokenPenalty, Vocabulary
    from service.runtime import OnnxSeq2Seq, SessionOptions

    manifest = read_manifest(bundles[name])
    for variant in manifest.variants:
        model = OnnxSeq2Seq(bundles[name], manifest, variant, SessionOptions(), shortlist=True)
        assert model.restricted is not None
        translator = Translator(bundles[name], variant)
        rows = translator.prepare(SOURCES[:3])
        encoded = translator.model.encode(*translator.encode([r.ids for r in rows]))
        V = manifest.architecture.vocab_size
        prev = np.full(3, manifest.special_tokens.bos, dtype=np.int64)
        none = TokenPenalty.none(3)
        full = model.step(prev, encoded.hidden, encoded, np.arange(3), 5, none)
        everything = np.arange(V)
        vocab = Vocabulary.build(everything, [everything] * 3, [1, 1, 1], np.zeros(0, np.int64))
        short = model.step(prev, encoded.hidden, encoded, np.arange(3), 5, none, vocab)
        np.testing.assert_array_equal(short.top_ids, full.top_ids)
        np.testing.assert_allclose(short.top_log_probs, full.top_log_probs, atol=1e-5)
