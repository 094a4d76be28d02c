"""LocallyConnected2D lowered as ``local`` for small batches and ``chunked`` for large ones.

Keras semantics: as implementation 1 (see ``local`` and ``chunked``, which compute the same
function). The batch size is only known at run time and the two lowerings win at opposite
ends: ``local`` gathers whole blocks and has no per-chunk overhead (best at batch 1), while
``chunked`` keeps each chunk's patches in cache (best at batch 64 on large layers). An ``If``
on the batch size runs one of them; their weights are shared initializers of the main graph.

ONNX ops: Shape, Gather, GreaterOrEqual, If (branches: the two lowerings) — 4 nodes at the top
level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant
from export.lowerings.chunked import lower_locally_connected_chunked
from export.lowerings.local import lower_locally_connected_local

LARGE_BATCH = 16  # from this batch size on, run the chunked branch


def _renamed(lowered: Lowered, suffix: str) -> Lowered:
    """The same computation with every tensor it creates renamed ``name + suffix``."""
    created = {i.name for i in lowered.initializers}
    created |= {out for node in lowered.nodes for out in node.output}
    mapping = {name: name + suffix for name in created}
    nodes = [_rename_node(node, mapping) for node in lowered.nodes]
    inits = []
    for init in lowered.initializers:
        copy = onnx.TensorProto()
        copy.CopyFrom(init)
        copy.name = mapping[init.name]
        inits.append(copy)
    return Lowered(Tensor(mapping[lowered.output.name], lowered.output.shape), nodes, inits)


def _rename_node(node: onnx.NodeProto, mapping: dict[str, str]) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = mapping.get(node.name, node.name + "@")
    copy.input[:] = [mapping.get(name, name) for name in node.input]
    copy.output[:] = [mapping.get(name, name) for name in node.output]
    for attribute in copy.attribute:  # subgraphs (Scan bodies) read outer tensors by name
        if attribute.type == onnx.AttributeProto.GRAPH:
            for inner in attribute.g.node:
                inner.input[:] = [mapping.get(name, name) for name in inner.input]
    return copy


def _branch(lowered: Lowered, name: str) -> onnx.GraphProto:
    output = helper.make_tensor_value_info(lowered.output.name, onnx.TensorProto.FLOAT,
                                           [None, *lowered.output.shape])
    return helper.make_graph(lowered.nodes, name, [], [output])


def lower_locally_connected_adaptive(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``adaptive`` strategy (see the module docstring)."""
    small = _renamed(lower_locally_connected_local(layer, x, ctx), "@small_batch")
    large = _renamed(lower_locally_connected_chunked(layer, x, ctx), "@large_batch")
    p = f"{layer.name}/"
    shape, batch, is_large, out = p + "input_shape", p + "batch", p + "is_large_batch", layer.name
    nodes = [
        helper.make_node("Shape", [x.name], [shape], name=shape),
        helper.make_node("Gather", [shape, p + "zero"], [batch], name=batch, axis=0),
        helper.make_node("GreaterOrEqual", [batch, p + "large_batch"], [is_large], name=is_large),
        helper.make_node("If", [is_large], [out], name=out,
                         then_branch=_branch(large, p + "large_batch_branch"),
                         else_branch=_branch(small, p + "small_batch_branch")),
    ]
    inits = [constant(p + "zero", 0, np.int64), constant(p + "large_batch", LARGE_BATCH, np.int64),
             *small.initializers, *large.initializers]
    return Lowered(Tensor(out, small.output.shape), nodes, inits)
