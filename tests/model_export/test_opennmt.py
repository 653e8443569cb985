"""OpenNMT-py checkpoints made by the real tool (scripts/opennmt-fixtures.sh) read without onmt."""

import argparse
import sys
import types
from pathlib import Path
from typing import Any

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


def test_the_shared_fixture_ties_one_vocabulary_and_table_to_the_generator() -> None:
    checkpoint = read_checkpoint(FIXTURES / "shared.pt")
    a = checkpoint.architecture
    assert (a.rnn_type, a.bidirectional, a.enc_layers, a.attention, a.bridge, a.input_feed,
            a.shared_embeddings, a.shared_generator) == ("LSTM", True, 1, "dot", True, True,
                                                         True, True)
    assert checkpoint.src_vocab == checkpoint.tgt_vocab
    w = checkpoint.weights
    assert {"encoder.bridge.0.weight", "encoder.bridge.1.weight"} <= w.keys()  # h and c
    assert torch.equal(w["generator.weight"],
                       w["decoder.embeddings.make_embedding.emb_luts.0.weight"])


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


def test_other_files_get_a_clear_message(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(UnsupportedCheckpoint, match="not an OpenNMT-py checkpoint"):
        read_checkpoint(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UnsupportedCheckpoint, match="not a torch checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    checkpoint = torch.load(FIXTURES / "gru.pt", weights_only=False)
    checkpoint["vocab"] = {"src": object(), "tgt": object()}
    torch.save(checkpoint, tmp_path / "no-vocab.pt")
    with pytest.raises(UnsupportedCheckpoint, match="no source and target vocabularies"):
        read_checkpoint(tmp_path / "no-vocab.pt")


def as_2x(checkpoint: dict[str, Any], path: Path) -> None:
    """Save ``checkpoint`` (3.x) in OpenNMT-py 2.x's layout: vocabularies as torchtext
    ``TextMultiField``/``Field``/``Vocab`` objects pickled under their 2.x module names,
    ``rnn_size``, a ``Sequential`` generator. The modules exist only while saving."""
    made = {m: types.ModuleType(m) for m in ("onmt", "onmt.inputters", "torchtext",
                                              "torchtext.data")}  # parents, for pickle
    for module, name in (("onmt.inputters.text_dataset", "TextMultiField"),
                         ("torchtext.data.field", "Field"), ("torchtext.vocab", "Vocab")):
        made[module] = types.ModuleType(module)
        setattr(made[module], name, type(name, (), {"__module__": module}))
    saved = {m: sys.modules.get(m) for m in made}
    sys.modules.update(made)
    try:
        fields = {}
        for side in ("src", "tgt"):
            vocab = made["torchtext.vocab"].Vocab()
            vocab.itos = checkpoint["vocab"][side]
            vocab.stoi = {t: i for i, t in enumerate(vocab.itos)}
            field = made["torchtext.data.field"].Field()
            field.vocab, field.init_token = vocab, "<s>" if side == "tgt" else None
            fields[side] = made["onmt.inputters.text_dataset"].TextMultiField()
            fields[side].fields = [(side, field)]
        options = vars(checkpoint["opt"]) | {"rnn_size": checkpoint["opt"].hidden_size}
        for name in ("hidden_size", "enc_hid_size", "dec_hid_size"):
            options.pop(name)
        torch.save({**checkpoint, "vocab": fields, "opt": argparse.Namespace(**options),
                    "generator": {f"0.{k}": v for k, v in checkpoint["generator"].items()}},
                   path)
    finally:
        for module, before in saved.items():
            if before is None:
                sys.modules.pop(module)
            else:
                sys.modules[module] = before


def test_a_2x_checkpoint_reads_without_torchtext_or_onmt(tmp_path: Path) -> None:
    checkpoint = torch.load(FIXTURES / "gru.pt", weights_only=False)
    as_2x(checkpoint, tmp_path / "v2.pt")
    assert "torchtext" not in sys.modules and "onmt" not in sys.modules
    old, new = read_checkpoint(tmp_path / "v2.pt"), read_checkpoint(FIXTURES / "gru.pt")
    assert old.architecture == new.architecture
    assert (old.src_vocab, old.tgt_vocab) == (new.src_vocab, new.tgt_vocab)
    assert old.weights.keys() == new.weights.keys()
    assert all(torch.equal(old.weights[k], new.weights[k]) for k in new.weights)
    assert (old.options["opennmt_version"], new.options["opennmt_version"]) == (2, 3)
