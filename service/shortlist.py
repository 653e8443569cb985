"""Vocabulary shortlist: score only the target pieces a sentence may produce.

At full load most of a decoder step is the output projection over the whole target
vocabulary. As Marian's lexical shortlists and CTranslate2's vocabulary map do, a bundle may
carry a table (:class:`Shortlist`, ``shortlist.npz``) of the target pieces each source piece
translates to, plus pieces every sentence may use. A running sentence's candidates are its
source pieces' lists, those pieces and whatever a constraint forces (EOS, placeholders).

One step scores the union of the running sentences' candidates
(:class:`service.decoding.Vocabulary`) and normalizes each row over its own sentence's
candidates only, so a sentence's result does not depend on its batch mates.
:func:`restrict_output` derives that step graph from a bundle's decoder: the output
projection's weight columns are gathered for the union (int8 weights stay int8, in an
integer kernel), each row's own logits are packed to the left (so its softmax sums the same
values in the same order whatever the union), and the top-k positions are mapped back to
vocabulary ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.graph_edit import GraphError, prune_initializers, topological

# The restricted step graph's extra inputs: vocab_ids (C,) int64, the union of the running
# sentences' candidates; row_columns (R, W) int64, each row's own candidates as
# columns of vocab_ids, ascending, padded with C; penalty_columns (R, P) int64, where each
# penalized token is in the row's packed list (a padding position if absent). Its log_probs
# are (R, W), in the packed order.
SHORTLIST_INPUTS = ("vocab_ids", "row_columns", "penalty_columns")


class ShortlistError(ValueError):
    """A shortlist table or decoder graph that cannot be used."""


@dataclass(frozen=True)
class Shortlist:
    candidates: np.ndarray  # (source vocabulary, top) int32 target ids, best first; -1 pads
    always: np.ndarray  # (M,) int32 target ids every sentence may produce

    def for_source(self, source_ids: Sequence[int], forced: Iterable[int] = ()) -> np.ndarray:
        """The ascending target ids a sentence with these source ids may produce."""
        forced_ids = np.fromiter(forced, np.int64)
        always = self._always_mask
        # a slot per target id, and a last one where the lists' -1 padding lands
        mask = np.zeros(max(always.size, int(forced_ids.max(initial=-1)) + 1) + 1, dtype=bool)
        mask[: always.size] = always
        mask[self.candidates[np.asarray(source_ids, dtype=np.int64)]] = True
        mask[forced_ids] = True
        return np.flatnonzero(mask[:-1]).astype(np.int64, copy=False)

    @cached_property
    def _always_mask(self) -> np.ndarray:
        """(V,) bool over the ids the table knows, True for :attr:`always`."""
        mask = np.zeros(max(int(self.candidates.max(initial=-1)),
                            int(self.always.max(initial=-1))) + 1, dtype=bool)
        mask[self.always] = True
        return mask

    def save(self, path: Path) -> None:
        with open(path, "wb") as f:  # np.savez would add ".npz" to a name without it
            np.savez_compressed(f, candidates=self.candidates, always=self.always)

    @staticmethod
    def load(path: Path, source_vocab: int, target_vocab: int) -> Shortlist:
        """Read and check a table (no pickles: plain integer arrays only)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                candidates, always = data["candidates"], data["always"]
        except (OSError, KeyError, ValueError) as exc:
            raise ShortlistError(f"{path.name}: not a shortlist table ({exc})") from exc
        if candidates.ndim != 2 or candidates.shape[0] != source_vocab or always.ndim != 1:
            raise ShortlistError(f"{path.name}: candidates {candidates.shape} and always "
                                 f"{always.shape} do not fit a {source_vocab}-piece source")
        if candidates.max(initial=-1) >= target_vocab or always.max(initial=0) >= target_vocab \
                or candidates.min(initial=-1) < -1 or always.min(initial=0) < 0:
            raise ShortlistError(f"{path.name}: target ids outside 0..{target_vocab - 1}")
        return Shortlist(candidates.astype(np.int32), always.astype(np.int32))


# The step graph.

def restrict_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a step decoder (``service.bundle.DECODER_INPUTS``/``OUTPUTS``, formats 2
    and later) that scores only ``vocab_ids`` and normalizes each row over its own
    ``row_columns`` (:data:`SHORTLIST_INPUTS`).

    The output projection is found as the producer of the graph's only ``LogSoftmax``: a
    ``MatMul`` (plus an ``Add`` of a bias) or a ``Gemm``, its weight an initializer or the
    ``DequantizeLinear`` of one (int8, one scale per output column, as
    :mod:`model_export.quantize` writes it; its input then comes from a
    ``DequantizeLinear`` whose quantized tensor is reused).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    nodes = list(graph.node)
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    inits = {t.name: t for t in graph.initializer}
    softmaxes = [n for n in nodes if n.op_type == "LogSoftmax"]
    tops = [n for n in nodes if n.op_type == "TopK"]
    if len(softmaxes) != 1 or len(tops) != 1:
        raise ShortlistError("the decoder needs exactly one LogSoftmax and one TopK")
    [softmax], [top] = softmaxes, tops
    logits = softmax.input[0]
    removed: list[onnx.NodeProto] = []
    bias: str | None = None
    project = producer.get(logits)
    if project is not None and project.op_type == "Add":
        a, b = project.input
        bias_name, product = (b, a) if b in inits else (a, b)
        if bias_name not in inits:
            raise ShortlistError("the output bias is not an initializer")
        removed.append(project)
        bias, project = bias_name, producer.get(product)
    if project is None or project.op_type not in ("MatMul", "Gemm"):
        raise ShortlistError("the LogSoftmax is not fed by the output projection")
    removed.append(project)
    attrs = {a.name: helper.get_attribute_value(a) for a in project.attribute}
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise ShortlistError("a Gemm output projection with transA, alpha or beta")
    if project.op_type == "Gemm" and len(project.input) > 2 and project.input[2]:
        if bias is not None:
            raise ShortlistError("two output biases")
        bias = project.input[2]
        if bias not in inits:  # quantized (int32, one scale per entry): its float value
            dq = producer.get(bias)
            if dq is None or dq.op_type != "DequantizeLinear" or not all(
                    name in inits for name in dq.input):
                raise ShortlistError("the output bias is neither an initializer nor a "
                                     "dequantized one")
            q, scale, *zero = (numpy_helper.to_array(inits[name]) for name in dq.input)
            value = ((q - zero[0]) if zero else q).astype(np.float32) * scale
            bias = "shortlist/bias"
            graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), bias))
            if len(consumers.get(dq.output[0], [])) == 1:
                removed.append(dq)
    by_row = project.op_type == "Gemm" and attrs.get("transB", 0) == 1  # weight (V, E)
    axis = 0 if by_row else 1  # the vocabulary axis of the weight
    features, weight = project.input[0], project.input[1]
    while weight in producer and producer[weight].op_type == "Identity":  # a tied table
        weight = producer[weight].input[0]

    new: list[onnx.NodeProto] = []

    def gathered(name: str, along: int = 0) -> str:
        out = f"shortlist/{name}/gathered"
        new.append(helper.make_node("Gather", [name, "vocab_ids"], [out], axis=along))
        return out

    def columns(name: str) -> str:
        """The weight's columns for vocab_ids, (E, C). Gathered as rows of a (V, E) copy:
        contiguous rows, several times faster than picking C bytes from each of E rows."""
        table = name
        if not by_row:
            table = f"shortlist/{name}/by_row"
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(numpy_helper.to_array(inits[name]).T), table))
        out = f"shortlist/{name}/columns"
        new.append(helper.make_node("Transpose", [gathered(table)], [out], perm=[1, 0]))
        return out

    if weight in inits:
        new.append(helper.make_node("MatMul", [features, columns(weight)],
                                    ["shortlist/logits"]))
    else:
        dq = producer.get(weight)
        fq = producer.get(features)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits or \
                fq is None or fq.op_type != "DequantizeLinear":
            raise ShortlistError("the output weight is neither an initializer nor a "
                                 "dequantized one")
        q_weight, scale, zero = (list(dq.input) + [""])[:3]
        dq_axis = {a.name: helper.get_attribute_value(a) for a in dq.attribute}.get("axis", 1)
        if list(inits[scale].dims) != [inits[q_weight].dims[axis]] or dq_axis % 2 != axis:
            raise ShortlistError("the int8 output weight needs one scale per vocabulary entry")
        if len(consumers.get(weight, [])) == 1:
            removed.append(dq)
        new.append(helper.make_node(
            "MatMulIntegerToFloat",
            [fq.input[0], columns(q_weight), fq.input[1], gathered(scale),
             *(fq.input[2:3] or [""]), gathered(zero) if zero else ""],
            ["shortlist/logits"], domain="com.microsoft"))
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    scores = "shortlist/logits"
    if bias is not None:
        new.append(helper.make_node("Add", [scores, gathered(bias)], ["shortlist/biased"]))
        scores = "shortlist/biased"
    # Each row over its own candidates, packed to the left in ascending id order (row_columns:
    # their columns of the union; padding points at an appended -inf column). A row's values
    # then sit at the same positions whatever the union, so the float32 softmax sums them in
    # the same order: the result does not depend on the batch.
    graph.initializer.extend([
        numpy_helper.from_array(np.array([0, 0, 0, 1], np.int64), "shortlist/pads"),
        numpy_helper.from_array(np.array(-np.inf, np.float32), "shortlist/minus_inf"),
        numpy_helper.from_array(np.array([0], np.int64), "shortlist/pad_id")])
    new += [
        helper.make_node("Pad", [scores, "shortlist/pads", "shortlist/minus_inf"],
                         ["shortlist/padded"]),
        helper.make_node("GatherElements", ["shortlist/padded", "row_columns"],
                         ["shortlist/packed"], axis=1),
        helper.make_node("LogSoftmax", ["shortlist/packed"], [softmax.output[0]], axis=-1),
    ]
    removed.append(softmax)
    scatters = [n for n in consumers.get(softmax.output[0], []) if n.op_type == "ScatterElements"]
    if len(scatters) != 1:
        raise ShortlistError("the penalties are not scattered onto the log-probabilities")
    scatters[0].input[1] = "penalty_columns"  # per row: its packed positions
    top_positions = "shortlist/top_positions"
    top_ids = top.output[1]
    top.output[1] = top_positions
    new += [  # the ids of the top positions only: (R, k), not every packed position's
        helper.make_node("Concat", ["vocab_ids", "shortlist/pad_id"], ["shortlist/ids"],
                         axis=0),
        helper.make_node("GatherElements", ["row_columns", top_positions],
                         ["shortlist/top_columns"], axis=1),
        helper.make_node("Gather", ["shortlist/ids", "shortlist/top_columns"], [top_ids],
                         axis=0),
    ]

    gone = {id(n) for n in removed}
    ready = {i.name for i in graph.input} | set(SHORTLIST_INPUTS) | {
        t.name for t in graph.initializer}
    try:
        ordered = topological([n for n in nodes if id(n) not in gone] + new, ready)
    except GraphError as exc:
        raise ShortlistError(f"the decoder graph has {exc}") from exc
    del graph.node[:]
    graph.node.extend(ordered)
    graph.input.extend([
        helper.make_tensor_value_info("vocab_ids", TensorProto.INT64, ["candidates"]),
        helper.make_tensor_value_info("row_columns", TensorProto.INT64, ["rows", "width"]),
        helper.make_tensor_value_info("penalty_columns", TensorProto.INT64,
                                      ["rows", "penalized"]),
    ])
    del graph.value_info[:]  # shapes inferred for the full vocabulary
    for out in graph.output:
        if out.name == "log_probs":
            out.CopyFrom(helper.make_tensor_value_info("log_probs", TensorProto.FLOAT,
                                                       ["rows", "width"]))
    prune_initializers(graph)  # the full projection's, if unshared
    onnx.checker.check_model(model)
    return model
