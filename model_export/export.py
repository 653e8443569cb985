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
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper
from torch import nn

from model_export.step_module import StepModule
from service.bundle import DECODER_INPUTS, DECODER_OUTPUTS, ENCODER_INPUTS, ENCODER_OUTPUTS

log = logging.getLogger(__name__)

OPSET = 17


class _EncoderGraph(nn.Module):
    def __init__(self, model: StepModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, src_ids: torch.Tensor, src_lengths: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.encode(src_ids, src_lengths)


class _DecoderGraph(nn.Module):
    """The exported step (``service.bundle.DECODER_INPUTS``): rows gather their sentence's
    encoder states, the penalties are added to the log-probabilities; the top-k is
    appended to the ONNX graph after export (:func:`_append_top_k`)."""

    def __init__(self, model: StepModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev_tokens: torch.Tensor, hidden: torch.Tensor,
                encoder_outputs: torch.Tensor, keys: torch.Tensor, src_mask: torch.Tensor,
                row_sentence: torch.Tensor, penalty_ids: torch.Tensor, penalties: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs, hidden, attention = self.model.decode_step(
            prev_tokens, hidden, encoder_outputs.index_select(0, row_sentence),
            keys.index_select(0, row_sentence), src_mask.index_select(0, row_sentence))
        R, C = penalties.shape
        log_probs = log_probs.scatter_add(1, penalty_ids.unsqueeze(0).expand(R, C), penalties)
        return log_probs, hidden, attention


def _append_top_k(path: Path) -> None:
    """Add the ``top_k`` input and a TopK node (largest, sorted; ties go to the lower index,
    ONNX opset >= 11) over the penalized log-probabilities."""
    model = onnx.load(str(path))
    graph = model.graph
    graph.input.append(helper.make_tensor_value_info("top_k", TensorProto.INT64, [1]))
    graph.node.append(helper.make_node("TopK", ["log_probs", "top_k"],
                                       ["top_log_probs", "top_ids"], axis=-1, largest=1,
                                       sorted=1))
    top = [helper.make_tensor_value_info("top_log_probs", TensorProto.FLOAT, ["rows", "k"]),
           helper.make_tensor_value_info("top_ids", TensorProto.INT64, ["rows", "k"])]
    outputs = {o.name: o for o in graph.output}
    del graph.output[:]
    graph.output.extend([*top, *(outputs[n] for n in DECODER_OUTPUTS if n in outputs)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def example_inputs(model: StepModule, batch: int, length: int, seed: int = 0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids (B, S) with varied lengths (the first row is full length)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    ids = torch.randint(4, model.src_vocab_size, (batch, length), generator=g)
    ids = ids.masked_fill(torch.arange(length)[None, :] >= lengths[:, None], model.pad_id)
    return ids, lengths


def export_onnx(model: StepModule, encoder_path: Path, decoder_path: Path) -> None:
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
    prev = torch.full((3,), model.bos_id, dtype=torch.long)
    rows = torch.tensor([0, 0, 1, 2])  # sentence 0 has two rows: shapes differ by axis
    no_ids, no_penalty = torch.zeros(0, dtype=torch.long), torch.zeros(4, 0)
    torch.onnx.export(
        _DecoderGraph(model).eval(),
        (prev[rows], hidden[rows], outputs, keys, src != model.pad_id, rows, no_ids,
         no_penalty),
        str(decoder_path), dynamo=False,
        input_names=list(DECODER_INPUTS[:-1]),
        output_names=["log_probs", "next_hidden", "attention"],
        opset_version=OPSET,
        dynamic_axes={"prev_tokens": {0: "rows"}, "hidden": {0: "rows"},
                      "encoder_outputs": {0: "batch", 1: "src_len"},
                      "attention_keys": {0: "batch", 1: "src_len"},
                      "src_mask": {0: "batch", 1: "src_len"}, "row_sentence": {0: "rows"},
                      "penalty_ids": {0: "penalized"},
                      "penalties": {0: "rows", 1: "penalized"},
                      "log_probs": {0: "rows"}, "next_hidden": {0: "rows"},
                      "attention": {0: "rows", 1: "src_len"}},
    )
    _append_top_k(decoder_path)
    # The exporter restores the wrapper's mode on the whole tree: a wrapper left in training
    # mode would switch dropout back on in the model.
    if model.training:
        raise RuntimeError("model is in training mode after export")


def parity(model: StepModule, encoder_path: Path, decoder_path: Path,
           shapes: tuple[tuple[int, int], ...] = ((1, 1), (1, 9), (4, 13), (16, 40))
           ) -> dict[str, Any]:
    """Max abs difference between ONNX and PyTorch on every output, several (B, S) shapes.

    Three decoder steps are compared (two rows per sentence, some tokens penalized, the top 3
    tokens), each fed PyTorch's previous state.
    """
    model.eval()
    enc = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    worst = {"encoder": 0.0, "log_probs": 0.0, "attention": 0.0, "hidden": 0.0}
    top_ids_differ = 0
    for seed, (batch, length) in enumerate(shapes):
        src, lengths = example_inputs(model, batch, length, seed)
        with torch.no_grad():
            outputs, hidden, keys = model.encode(src, lengths)
        got = enc.run(None, {"src_ids": src.numpy(), "src_lengths": lengths.numpy()})
        for ours, theirs in zip(got, (outputs, hidden, keys), strict=True):
            worst["encoder"] = max(worst["encoder"], _maxdiff(ours, theirs))
        mask = src != model.pad_id
        rows = torch.arange(batch).repeat_interleave(2)  # two hypotheses per sentence
        penalty_ids = torch.tensor([model.pad_id + 3, 5])  # finite, so diffs are too
        penalties = torch.tensor([[0.0, -5.0], [-3.0, 0.0]]).repeat(batch, 1)
        prev, hidden = torch.full((2 * batch,), model.bos_id, dtype=torch.long), hidden[rows]
        for _ in range(3):
            with torch.no_grad():
                log_probs, next_hidden, attention = model.decode_step(
                    prev, hidden, outputs[rows], keys[rows], mask[rows])
                log_probs = log_probs.scatter_add(1, penalty_ids.expand(2 * batch, 2),
                                                  penalties)
                top = log_probs.topk(3, dim=-1)
            feeds = (prev, hidden, outputs, keys, mask, rows, penalty_ids, penalties,
                     torch.tensor([3]))
            got = dict(zip(DECODER_OUTPUTS, dec.run(list(DECODER_OUTPUTS), {
                n: t.numpy() for n, t in zip(DECODER_INPUTS, feeds, strict=True)}),
                           strict=True))
            worst["log_probs"] = max(worst["log_probs"], _maxdiff(got["log_probs"], log_probs),
                                     _maxdiff(got["top_log_probs"], top.values))
            worst["hidden"] = max(worst["hidden"], _maxdiff(got["next_hidden"], next_hidden))
            worst["attention"] = max(worst["attention"], _maxdiff(got["attention"], attention))
            top_ids_differ += int((got["top_ids"] != top.indices.numpy()).sum())
            prev, hidden = top.indices[:, 0], next_hidden
    report: dict[str, Any] = {k: float(f"{v:.3g}") for k, v in worst.items()}
    report["shapes"] = [list(s) for s in shapes]
    report["top_ids_differ"] = top_ids_differ  # near-ties may order differently
    log.info("ONNX parity (max abs diff): %s", report)
    return report


def _maxdiff(ours: np.ndarray, theirs: torch.Tensor) -> float:
    return float(np.abs(ours - theirs.numpy()).max())
