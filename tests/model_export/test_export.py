from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from model_export.export import export_onnx, parity
from model_export.model import ModelConfig, Seq2Seq
from service.encoder_graph import fuse_bidirectional, same_encoding


@pytest.mark.parametrize("attention", ["bahdanau", "luong-general", "luong-dot"])
def test_onnx_matches_pytorch(tmp_path: Path, attention: str) -> None:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=60, emb_dim=8, enc_hidden=6, dec_hidden=12, attn_dim=5,
                         attention=attention)
    model = Seq2Seq(config)
    model.train()  # export must run (and leave the model) in eval mode regardless
    export_onnx(model, tmp_path / "enc.onnx", tmp_path / "dec.onnx")
    assert not model.training

    report = parity(model, tmp_path / "enc.onnx", tmp_path / "dec.onnx")

    for output in ("encoder", "log_probs", "attention", "hidden"):
        assert report[output] < 1e-4, (output, report)
    assert report["top_ids_differ"] == 0

    # The service runs this encoder as one bidirectional GRU: the export keeps that shape.
    encoder = onnx.load(str(tmp_path / "enc.onnx"))
    fused = fuse_bidirectional(encoder)
    assert fused is not None
    assert same_encoding(*(ort.InferenceSession(m.SerializeToString()) for m in (encoder, fused)),
                         encoder, pad=0)
