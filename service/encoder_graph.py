"""One bidirectional GRU for an encoder exported as two.

``model_export``'s encoder runs its backward GRU as a forward one over each sequence
reversed within its length (so padding never reaches a real position), and the TorchScript
exporter writes that as two ONNX ``GRU`` nodes and some forty small index ops that reverse
the input, reverse the output back and pick each direction's final state. ONNX's own
``GRU`` does all of it in one node: ``direction="bidirectional"`` with ``sequence_lens``
runs the reverse direction from each sequence's last real token, and its ``Y_h`` holds the
forward state at that token and the backward one at the first. :func:`fuse_bidirectional`
writes that graph; the service uses it only where it gives the bundle's own numbers on
every real position (:func:`same_encoding`), else it keeps the file's graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from service.bundle import ENCODER_INPUTS
from service.graph_edit import GraphError, live, prune_initializers, subgraph_inputs, topological

_PREFIX = "fused_encoder/"


def fuse_bidirectional(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of ``model`` with its two unidirectional GRUs (the forward one over the
    embedded source, the backward one over it reversed) as one bidirectional GRU, or None
    where the graph is not that shape."""
    graph = model.graph
    producer = {out: n for n in graph.node for out in n.output}
    inits = {t.name: t for t in graph.initializer}
    lengths_input = ENCODER_INPUTS[1]
    grus = [n for n in graph.node if n.op_type == "GRU"]
    if len(grus) != 2 or lengths_input not in {i.name for i in graph.input}:
        return None
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in grus]
    if any(a.get("direction", b"forward") not in (b"forward", "forward") for a in attrs) \
            or attrs[0] != attrs[1] or any(len(n.output) < 2 for n in grus):
        return None

    def transposed_input(gru: onnx.NodeProto) -> onnx.NodeProto | None:
        node = producer.get(gru.input[0])
        perm = [] if node is None else [helper.get_attribute_value(a) for a in node.attribute
                                        if a.name == "perm"]
        return node if node is not None and node.op_type == "Transpose" and \
            perm == [[1, 0, 2]] else None

    def zero_state(gru: onnx.NodeProto) -> bool:
        if len(gru.input) < 6 or not gru.input[5]:
            return True
        node = producer.get(gru.input[5])
        if node is None or node.op_type != "ConstantOfShape":
            return False
        value = [helper.get_attribute_value(a) for a in node.attribute if a.name == "value"]
        return not value or not numpy_helper.to_array(value[0]).any()

    inputs = [transposed_input(n) for n in grus]
    if any(t is None for t in inputs) or not all(zero_state(n) for n in grus) or any(
            len(n.input) > 4 and n.input[4] for n in grus) or not all(
            all(name in inits for name in n.input[1:4]) for n in grus):
        return None

    # The forward GRU reads the embedded source itself, the backward one a reordering of it.
    def reorders(reversed_: onnx.NodeProto, forward: onnx.NodeProto) -> bool:
        node = producer.get(reversed_.input[0])
        return node is not None and node.input[:1] == [forward.input[0]]

    first, second = inputs  # both Transposes (checked above)
    assert first is not None and second is not None
    if reorders(second, first):
        fwd, bwd = grus
    elif reorders(first, second):
        bwd, fwd = grus
    else:
        return None
    # Where the two directions meet: the Concat of both sequences (the encoder outputs) and
    # the Concat of both final states.
    ancestry: dict[str, set[str]] = {}

    def sources(name: str) -> set[str]:
        if name not in ancestry:
            node = producer.get(name)
            found = {node.output[0]} if node in (fwd, bwd) else set()
            if node is not None and node not in (fwd, bwd):
                for i in [*node.input, *subgraph_inputs([node])]:
                    if i and i != name:
                        found |= sources(i)
            ancestry[name] = found
        return ancestry[name]

    joins = [n for n in graph.node if n.op_type == "Concat" and len(n.input) == 2
             and sources(n.input[0]) == {fwd.output[0]}
             and sources(n.input[1]) == {bwd.output[0]}]
    sequences = [n for n in joins if _is_sequence_of(producer, n.input[0], fwd)]
    if len(joins) != 2 or len(sequences) != 1:
        return None
    [outputs_join] = sequences
    [state_join] = [n for n in joins if n is not outputs_join]

    def stacked(index: int) -> np.ndarray:
        return np.concatenate([numpy_helper.to_array(inits[n.input[index]]) for n in (fwd, bwd)])

    p = _PREFIX
    new_inits = [numpy_helper.from_array(stacked(i), p + w)
                 for i, w in ((1, "W"), (2, "R"), (3, "B"))]
    new_inits += [numpy_helper.from_array(np.array(shape, np.int64), p + name)
                  for name, shape in (("by_position", [0, 0, -1]), ("by_sentence", [0, -1]))]
    gru_attrs = {**attrs[0], "direction": "bidirectional"}
    new_nodes = [
        helper.make_node("Cast", [lengths_input], [p + "lengths"], to=TensorProto.INT32),
        helper.make_node("GRU", [fwd.input[0], p + "W", p + "R", p + "B", p + "lengths"],
                         [p + "Y", p + "Y_h"], name=p + "GRU", **gru_attrs),
        # Y (S, 2, B, H) -> (B, S, 2H); Y_h (2, B, H) -> (B, 2H): forward half first
        helper.make_node("Transpose", [p + "Y"], [p + "Y_by_sentence"], perm=[2, 0, 1, 3]),
        helper.make_node("Reshape", [p + "Y_by_sentence", p + "by_position"],
                         [outputs_join.output[0]]),
        helper.make_node("Transpose", [p + "Y_h"], [p + "Y_h_by_sentence"], perm=[1, 0, 2]),
        helper.make_node("Reshape", [p + "Y_h_by_sentence", p + "by_sentence"],
                         [state_join.output[0]]),
    ]
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    kept = [n for n in fused.graph.node if n.output[0] not in
            (outputs_join.output[0], state_join.output[0])]
    fused.graph.initializer.extend(new_inits)
    try:
        nodes = topological(live(kept + new_nodes, {o.name for o in graph.output}),
                            {i.name for i in graph.input} | {t.name for t in
                                                             fused.graph.initializer})
    except GraphError:
        return None
    del fused.graph.node[:]
    fused.graph.node.extend(nodes)
    prune_initializers(fused.graph)
    del fused.graph.value_info[:]  # shapes of removed tensors
    onnx.checker.check_model(fused)
    return fused


def same_encoding(original: ort.InferenceSession, fused: ort.InferenceSession,
                  model: onnx.ModelProto, pad: int) -> bool:
    """Whether two encoder sessions (``onnxruntime.InferenceSession``) of ``model`` give
    the same numbers on every real position of a padded probe batch (encoder outputs,
    attention keys) and the same final states."""
    rng = np.random.default_rng(0)
    lengths = np.array([1, 5, 2, 9, 4], dtype=np.int64)
    tables = {t.name: t.dims[0] for t in model.graph.initializer if t.dims}
    src_ids, src_lengths = ENCODER_INPUTS
    vocabulary = min((tables[n.input[0]] for n in model.graph.node if n.op_type == "Gather"
                      and n.input[1] == src_ids and n.input[0] in tables), default=pad + 1)
    ids = rng.integers(0, vocabulary, (lengths.size, int(lengths.max())), dtype=np.int64)
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    ids[~real] = pad
    feeds = {src_ids: ids, src_lengths: lengths}
    names = [o.name for o in original.get_outputs()]
    before = dict(zip(names, original.run(names, feeds), strict=True))
    after = dict(zip(names, fused.run(names, feeds), strict=True))
    for name, value in before.items():
        mine = after[name]
        if value.shape != mine.shape:
            return False
        if value.ndim == 3:  # per position: only the real ones matter (the rest is masked)
            value, mine = value[real], mine[real]
        if not np.array_equal(value, mine):
            return False
    return True


def _is_sequence_of(producer: dict[str, onnx.NodeProto], name: str, gru: onnx.NodeProto
                    ) -> bool:
    """``name`` is the GRU's Y as (B, S, H): Transpose(perm 1, 0, 2) of its Squeeze."""
    node = producer.get(name)
    if node is None or node.op_type != "Transpose":
        return False
    squeeze = producer.get(node.input[0])
    return squeeze is not None and squeeze.op_type == "Squeeze" and \
        squeeze.input[0] == gru.output[0]
