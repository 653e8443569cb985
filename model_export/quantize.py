"""Batch-invariant int8 quantization of the exported encoder and decoder step.

Dynamic quantization (``quantize_dynamic``) computes one activation scale per tensor at run
time, i.e. per batch, so a sentence's translation depended on its batch mates. Here every
scale is fixed when the bundle is written (static QDQ quantization, onnxruntime's
``quantize_static``, calibrated on training sentences), so a row's result depends on that
row alone:

- weights of ``MatMul``/``Gemm`` nodes: int8, symmetric, one scale per output channel, in
  the 7-bit range (``reduce_range``): a uint8 x int8 pair sum then fits the int16 lanes of
  AVX2 kernels without VNNI, so every x86 CPU computes the same integers;
- their activations: uint8 with one fixed scale per tensor; products stay float on output
  (no requantized logits), and tensors also read by float ops (the GRU update reads h) keep
  their exact value (``DedicatedQDQPair``);
- every weight product must run in an integer kernel after onnxruntime's QDQ fusion
  (:func:`check_integer_products`): a float GEMM is not row-invariant in onnxruntime (one
  row takes another code path than eight, differing in the last bit) and the quantizer of
  the next product turns such a bit into a different int8 value;
- embedding tables (``Gather``): int8 with one scale per row, looked up with their ids.

The GRU op of the encoder stays fp32 (onnxruntime has no quantized GRU), as does attention,
a product of two activations.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from service.bundle import DECODER_INPUTS, ENCODER_INPUTS
from service.decoding import (
    EncodedBatch,
    StepOutput,
    TokenPenalty,
    Vocabulary,
    greedy_search,
    max_lengths,
)
from service.runtime import OnnxSeq2Seq

log = logging.getLogger(__name__)


def quantize_embeddings(model: onnx.ModelProto) -> int:
    """Replace every ``Gather`` from a 2-D fp32 initializer by a lookup in an int8 copy
    times the looked-up row's scale; returns how many tables were quantized.

    A table whose rows go straight into a weight product stays fp32: onnxruntime does not
    fuse a quantized product fed by the rescaling ``Mul`` (an LSTM cell's input, say)."""
    graph = model.graph
    feeds_product = {n.input[0] for n in graph.node if n.op_type in WEIGHT_OPS}
    direct = {n.input[0] for n in graph.node
              if n.op_type == "Gather" and n.output[0] in feeds_product}
    tables = {t.name: t for t in graph.initializer
              if len(t.dims) == 2 and t.data_type == TensorProto.FLOAT and t.name not in direct}
    nodes: list[onnx.NodeProto] = []
    done: dict[str, tuple[str, str]] = {}
    for node in graph.node:
        name = node.input[0] if node.op_type == "Gather" else ""
        if name not in tables or helper.get_attribute_value(
                next((a for a in node.attribute if a.name == "axis"), helper.make_attribute(
                    "axis", 0))) != 0:
            nodes.append(node)
            continue
        if name not in done:
            table = numpy_helper.to_array(tables[name])  # (V, E)
            scale = np.abs(table).max(axis=1, keepdims=True) / 127.0  # (V, 1)
            scale[scale == 0] = 1.0
            quantized = np.clip(np.round(table / scale), -127, 127).astype(np.int8)
            graph.initializer.append(numpy_helper.from_array(quantized, f"{name}_int8"))
            graph.initializer.append(numpy_helper.from_array(scale.astype(np.float32),
                                                             f"{name}_row_scale"))
            done[name] = (f"{name}_int8", f"{name}_row_scale")
        q_table, scales = done[name]
        ids, out = node.input[1], node.output[0]
        nodes += [
            helper.make_node("Gather", [q_table, ids], [f"{out}_int8"]),
            helper.make_node("Cast", [f"{out}_int8"], [f"{out}_unscaled"], to=TensorProto.FLOAT),
            helper.make_node("Gather", [scales, ids], [f"{out}_scale"]),
            helper.make_node("Mul", [f"{out}_unscaled", f"{out}_scale"], [out]),
        ]
    used = {i for n in nodes for i in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return len(done)


WEIGHT_OPS = ("MatMul", "Gemm")  # nn.Linear exports as either


def weight_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the ``MatMul``/``Gemm`` nodes whose second operand is a weight (an
    initializer); products of two activations (attention) stay fp32."""
    weights = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node
            if n.op_type in WEIGHT_OPS and n.input[1] in weights]


class _Feeds(CalibrationDataReader):
    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


class _RecordingDecoder:
    """A step model that runs the fp32 decoder and keeps every step's inputs."""

    def __init__(self, model: OnnxSeq2Seq) -> None:
        self.model = model
        self.feeds: list[dict[str, np.ndarray]] = []

    def step(self, prev_tokens: np.ndarray, hidden: np.ndarray, encoded: EncodedBatch,
             row_sentence: np.ndarray, top_k: int, penalty: TokenPenalty,
             vocab: Vocabulary | None = None, attention: bool = True) -> StepOutput:
        assert vocab is None, "calibration runs the whole vocabulary"
        values = (prev_tokens, hidden, encoded.outputs, encoded.keys, encoded.mask,
                  row_sentence, penalty.token_ids, penalty.values, np.array([top_k]))
        self.feeds.append(dict(zip(DECODER_INPUTS, values, strict=True)))
        return self.model.step(prev_tokens, hidden, encoded, row_sentence, top_k, penalty,
                               attention=attention)

    def step_log_probs(self, prev_tokens: np.ndarray, hidden: np.ndarray,
                       encoded: EncodedBatch, row_sentence: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.model.step_log_probs(prev_tokens, hidden, encoded, row_sentence)


def calibration_feeds(model: OnnxSeq2Seq, sources: Sequence[list[int]], bos: int, eos: int,
                      pad: int, batch_size: int = 32
                      ) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Encoder and decoder inputs met while greedily translating ``sources`` (id lists
    ending in EOS) with the fp32 model: what the int8 model will see in service."""
    encoder_feeds, recorder = [], _RecordingDecoder(model)
    for start in range(0, len(sources), batch_size):
        batch = sources[start : start + batch_size]
        lengths = np.array([len(s) for s in batch], dtype=np.int64)
        src = np.full((len(batch), int(lengths.max())), pad, dtype=np.int64)
        for row, ids in enumerate(batch):
            src[row, : len(ids)] = ids
        encoder_feeds.append(dict(zip(ENCODER_INPUTS, (src, lengths), strict=True)))
        encoded = model.encode(src, lengths)
        greedy_search(recorder, encoded, bos, eos, max_lengths(lengths, 2.0, 512))
    return encoder_feeds, recorder.feeds


def quantize_static_int8(fp32: Path, out: Path, feeds: Sequence[dict[str, np.ndarray]]) -> None:
    """Write the batch-invariant int8 version of ``fp32`` (see the module docstring)."""
    model = onnx.load(str(fp32))
    tables = quantize_embeddings(model)
    matmuls = weight_matmuls(model)
    staged = out.with_suffix(".staged.onnx")
    onnx.save(model, str(staged))
    try:
        quantize_static(
            str(staged), str(out), _Feeds(feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(WEIGHT_OPS), nodes_to_quantize=matmuls, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                           "DedicatedQDQPair": True,
                           "OpTypesToExcludeOutputQuantization": list(WEIGHT_OPS)},
        )
    finally:
        staged.unlink(missing_ok=True)
    check_integer_products(out)
    log.info("%s: %d embedding tables and %d weight MatMul/Gemm nodes quantized "
             "(%d calibration feeds)", out.name, tables, len(matmuls), len(feeds))


class NotBatchInvariant(RuntimeError):
    """onnxruntime would run some quantized weight product as a float GEMM."""


def check_integer_products(path: Path) -> None:
    """Fail unless onnxruntime fuses every weight product of ``path`` into an integer kernel
    (no weight is dequantized to float at run time)."""
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        optimized = onnx.load(so.optimized_model_filepath)
    weights = {t.name for t in optimized.graph.initializer if len(t.dims) >= 2}
    float_products = [n.name for n in optimized.graph.node
                      if n.op_type == "DequantizeLinear" and n.input[0] in weights]
    if float_products:
        raise NotBatchInvariant(f"{path.name}: weights still dequantized to float at run time "
                           f"({', '.join(float_products)}): those products would not be "
                           "batch-invariant")
