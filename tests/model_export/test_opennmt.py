"""OpenNMT-py checkpoints made by the real tool (scripts/opennmt-fixtures.sh) read without onmt."""

import argparse
from pathlib import Path

import pytest
import torch

from model_export.opennmt import OnmtArchitecture, UnsupportedCheckpoint, read_checkpoint

FIXTURES = Path(__file__).parents[1] / "data" / "opennmt"


def test_the_gru_fixture_is_a_bidirectional_gru_with_mlp_attention_input_feed_and_bridge(
) -> None:
    checkpoint = read_checkpoint(FIXTURES / "gru.pt")
    assert checkpoint.architecture == OnmtArchitecture(
        rnn_type="GRU", bidirectional=True, enc_layers=2, dec_layers=2, hidden=64, src_emb=32,
        tgt_emb=32, bridge=True, input_feed=True, attention="mlp", shared_embeddings=False,
        shared_generator=False)
    assert "encoder.bridge.0.weight" in checkpoint.weights
    assert checkpoint.weights["generator.weight"].shape == (len(checkpoint.tgt_vocab), 64)
    assert [checkpoint.special_id("tgt", n) for n in ("unk", "pad", "bos", "eos")] == [0, 1, 2, 3]


def test_the_lstm_fixture_is_a_unidirectional_lstm_with_general_attention() -> None:
    architecture = read_checkpoint(FIXTURES / "lstm.pt").architecture
    assert (architecture.rnn_type, architecture.bidirectional, architecture.attention,
            architecture.input_feed, architecture.bridge) == ("LSTM", False, "general", False,
                                                              False)


@pytest.mark.parametrize(("option", "value"), [
    ("encoder_type", "transformer"), ("decoder_type", "transformer"), ("rnn_type", "SRU"),
    ("copy_attn", True), ("coverage_attn", True), ("global_attention", "none"),
    ("context_gate", "both"), ("global_attention_function", "sparsemax")])
def test_unsupported_options_are_refused_naming_the_option(tmp_path: Path, option: str,
                                                           value: object) -> None:
    checkpoint = torch.load(FIXTURES / "gru.pt", weights_only=False)
    options = vars(checkpoint["opt"]) | {option: value}
    checkpoint["opt"] = argparse.Namespace(**options)
    torch.save(checkpoint, tmp_path / "changed.pt")
    with pytest.raises(UnsupportedCheckpoint, match=option):
        read_checkpoint(tmp_path / "changed.pt")


def test_other_files_and_2x_vocabularies_get_a_clear_message(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UnsupportedCheckpoint, match="not an OpenNMT-py checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    checkpoint = torch.load(FIXTURES / "gru.pt", weights_only=False)
    checkpoint["vocab"] = {"src": object(), "tgt": object()}  # 2.x: torchtext fields
    torch.save(checkpoint, tmp_path / "v2.pt")
    with pytest.raises(UnsupportedCheckpoint, match="convertv2_v3"):
        read_checkpoint(tmp_path / "v2.pt")
