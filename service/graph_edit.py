"""Edits of ONNX graphs that the service derives from a bundle's at load
(:mod:`service.shortlist`, :mod:`service.encoder_graph`): order, drop what is unread."""

from __future__ import annotations

import onnx


class GraphError(ValueError):
    """A graph whose nodes cannot be ordered: a cycle or an input nothing makes."""


def topological(nodes: list[onnx.NodeProto], ready: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where each reads only what is ``ready`` or made before it
    (``ready`` grows by what they make)."""
    ordered: list[onnx.NodeProto] = []
    waiting = nodes
    while waiting:
        later = []
        for n in waiting:
            if all(not name or name in ready for name in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                later.append(n)
        if len(later) == len(waiting):
            raise GraphError(f"a cycle or a missing input at {later[0].op_type} {later[0].name}")
        waiting = later
    return ordered


def live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """The nodes that ``outputs`` depend on."""
    needed = set(outputs)
    while True:
        kept = [n for n in nodes if any(o in needed for o in n.output)]
        more = needed | {i for n in kept for i in n.input if i} | subgraph_inputs(kept)
        if more == needed:
            return kept
        needed = more


def prune_initializers(graph: onnx.GraphProto) -> None:
    """Drop the initializers no node (or subgraph of one) reads any more."""
    used = {name for n in graph.node for name in n.input} | subgraph_inputs(list(graph.node))
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def subgraph_inputs(nodes: list[onnx.NodeProto]) -> set[str]:
    """Outer-scope names the subgraphs of ``nodes`` (If branches) read."""
    names: set[str] = set()
    for node in nodes:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names |= {i for n in attr.g.node for i in n.input}
    return names
