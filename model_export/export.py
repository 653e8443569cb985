"""Export the encoder and the decoder step to ONNX and check them against PyTorch.

The TorchScript-based exporter (``dynamo=False``) is used: it maps ``nn.GRU`` to the ONNX GRU
op with the right ``linear_before_reset``. Parity is never assumed; it is measured on several
batch sizes and lengths and recorded in the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from model_export.model import Seq2Seq
from model_export.tokenizer import BOS
from service.bundle import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS

log = logging.getLogger(__name__)

OPSET = 17


class _EncoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.encode(src_ids, src_lengths)


class _DecoderGraph(nn.Module):
    def __init__(self, model: Seq2Seq) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev_tokens: torch.Tensor, hidden: torch.Tensor,
                encoder_outputs: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.decode_step(prev_tokens, hidden, encoder_outputs, keys, src_mask)


def example_inputs(model: Seq2Seq, batch: int, length: int, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids (B, S) with varied lengths (the first row is full length)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    ids = torch.randint(4, model.config.vocab_size, (batch, length), generator=g)
    ids = ids.masked_fill(torch.arange(length)[None, :] >= lengths[:, None], model.config.pad_id)
    return ids, lengths


def export_onnx(model: Seq2Seq, encoder_path: Path, decoder_path: Path) -> None:
    """Write ``encoder.onnx`` and ``decoder.onnx`` with dynamic batch and length axes."""
    model.eval()
    src, lengths = example_inputs(model, 3, 7)
    with torch.no_grad():
        outputs, hidden, keys = model.encode(src, lengths)
    torch.onnx.export(
        _EncoderGraph(model).eval(), (src, lengths), str(encoder_path), dynamo=False,
        input_names=list(ENCODER_INPUTS), output_names=list(ENCODER_OUTPUTS),
        opset_version=OPSET,
        dynamic_axes={"src_ids": {0: "batch", 1: "src_len"}, "src_lengths": {0: "batch"},
                      "encoder_outputs": {0: "batch", 1: "src_len"},
                      "decoder_init": {0: "batch"},
                      "attention_keys": {0: "batch", 1: "src_len"}},
    )
    prev = torch.full((3,), BOS, dtype=torch.long)
    torch.onnx.export(
        _DecoderGraph(model).eval(), (prev, hidden, outputs, keys, src != model.config.pad_id),
        str(decoder_path), dynamo=False,
        input_names=list(DECODER_INPUTS), output_names=list(DECODER_OUTPUTS),
        opset_version=OPSET,
        dynamic_axes={"prev_tokens": {0: "batch"}, "hidden": {0: "batch"},
                      "encoder_outputs": {0: "batch", 1: "src_len"},
                      "attention_keys": {0: "batch", 1: "src_len"},
                      "src_mask": {0: "batch", 1: "src_len"},
                      "log_probs": {0: "batch"}, "next_hidden": {0: "batch"},
                      "attention": {0: "batch", 1: "src_len"}},
    )
    # The exporter restores the wrapper's mode on the whole tree: a wrapper left in training
    # mode would switch dropout back on in the model.
    if model.training:
        raise RuntimeError("model is in training mode after export")


def parity(model: Seq2Seq, encoder_path: Path, decoder_path: Path,
           shapes: tuple[tuple[int, int], ...] = ((1, 1), (1, 9), (4, 13), (16, 40))
           ) -> dict[str, Any]:
    """Max abs difference between ONNX and PyTorch on every output, several (B, S) shapes.

    Three decoder steps are compared, each fed PyTorch's previous state.
    """
    model.eval()
    enc = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    worst = {"encoder": 0.0, "log_probs": 0.0, "attention": 0.0, "hidden": 0.0}
    for seed, (batch, length) in enumerate(shapes):
        src, lengths = example_inputs(model, batch, length, seed)
        with torch.no_grad():
            outputs, hidden, keys = model.encode(src, lengths)
        got = enc.run(None, {"src_ids": src.numpy(), "src_lengths": lengths.numpy()})
        for ours, theirs in zip(got, (outputs, hidden, keys), strict=True):
            worst["encoder"] = max(worst["encoder"], _maxdiff(ours, theirs))
        mask = src != model.config.pad_id
        prev = torch.full((batch,), BOS, dtype=torch.long)
        for _ in range(3):
            with torch.no_grad():
                log_probs, next_hidden, attention = model.decode_step(prev, hidden, outputs,
                                                                      keys, mask)
            feeds = (prev, hidden, outputs, keys, mask)
            got = dec.run(None, {n: t.numpy() for n, t in zip(DECODER_INPUTS, feeds,
                                                                strict=True)})
            worst["log_probs"] = max(worst["log_probs"], _maxdiff(got[0], log_probs))
            worst["hidden"] = max(worst["hidden"], _maxdiff(got[1], next_hidden))
            worst["attention"] = max(worst["attention"], _maxdiff(got[2], attention))
            prev, hidden = log_probs.argmax(-1), next_hidden
    report: dict[str, Any] = {k: float(f"{v:.3g}") for k, v in worst.items()}
    report["shapes"] = [list(s) for s in shapes]
    log.info("ONNX parity (max abs diff): %s", report)
    return report


def _maxdiff(ours: np.ndarray, theirs: torch.Tensor) -> float:
    return float(np.abs(ours - theirs.numpy()).max())
