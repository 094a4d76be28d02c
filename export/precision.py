"""``fp16`` precision: weights and compute in float16, float32 at the file's boundary.

The lowerings build a float32 graph; :func:`to_float16` rewrites it: every float32 initializer
becomes float16, every float32 type declared inside the graph (Scan and If bodies included)
becomes float16, one Cast turns the float32 input into float16 before the first layer and one
Cast per output turns the result back into float32. Clients, the server's input contract and
the parity check see the same float32 interface as an fp32 export. The accuracy cost is
measured in docs/export.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.errors import ExportError

FP32, FP16 = "fp32", "fp16"
FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
_SUFFIX = "/fp16"


def to_float16(model: onnx.ModelProto) -> None:
    """Rewrite ``model`` (float32 input and outputs) in place to compute in float16.

    Raises:
        ExportError: a weight too large for float16 (|w| > 65504).
    """
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.FLOAT:
            init.CopyFrom(_float16_tensor(init))
    for sub in _subgraphs(graph):
        for info in [*sub.input, *sub.output, *sub.value_info]:
            if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
                info.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    del graph.value_info[:]  # shapes and types are inferred again by the checker and ONNX Runtime
    _cast_boundary(graph)


def _float16_tensor(init: onnx.TensorProto) -> onnx.TensorProto:
    values = numpy_helper.to_array(init)
    largest = float(np.max(np.abs(values), initial=0.0))
    if largest > FLOAT16_MAX:
        raise ExportError(f"Weight '{init.name}' has a value of magnitude {largest:.4g}. Expected at most "
                          f"{FLOAT16_MAX:g} for precision fp16. Export with precision fp32.")
    return numpy_helper.from_array(values.astype(np.float16), init.name)


def _subgraphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The bodies of control-flow nodes (Scan, If), recursively (not ``graph`` itself)."""
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield attribute.g
                yield from _subgraphs(attribute.g)


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    yield from graph.node
    for sub in _subgraphs(graph):
        yield from sub.node


def _rename_uses(graph: onnx.GraphProto, old: str, new: str, outputs_too: bool) -> None:
    """Point every reader of tensor ``old`` (in bodies too) at ``new``; also its writer if asked."""
    for node in _all_nodes(graph):
        node.input[:] = [new if name == old else name for name in node.input]
        if outputs_too:
            node.output[:] = [new if name == old else name for name in node.output]


def _cast_boundary(graph: onnx.GraphProto) -> None:
    """Cast the float32 input to float16 first and each float16 result to float32 last."""
    first: list[onnx.NodeProto] = []
    for graph_input in graph.input:
        name = graph_input.name
        _rename_uses(graph, name, name + _SUFFIX, outputs_too=False)
        first.append(helper.make_node("Cast", [name], [name + _SUFFIX], name=name + _SUFFIX,
                                      to=onnx.TensorProto.FLOAT16))
    last: list[onnx.NodeProto] = []
    inputs = {i.name for i in graph.input}
    for graph_output in graph.output:
        name = graph_output.name
        source = name + _SUFFIX
        if name in inputs:  # an output that is the input itself keeps its float32 value
            continue
        _rename_uses(graph, name, source, outputs_too=True)
        last.append(helper.make_node("Cast", [source], [name], name=f"{name}/float32",
                                     to=onnx.TensorProto.FLOAT))
    nodes = [*first, *graph.node, *last]
    del graph.node[:]
    graph.node.extend(nodes)
