"""Whole-model assembly: walk a Keras model's layers, lower each one, build the ONNX graph.

Every unsupported layer is collected and reported at once (one :class:`UnsupportedLayersError`).
The graph has one input named after the model's InputLayer with a dynamic batch axis, and one
output per model output, named after the layer that computes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnx
from onnx import helper

from export.errors import ExportError, UnsupportedLayersError
from export.lowerings import STANDARD, find_lowering
from export.lowerings.base import Lowered, LoweringContext, Tensor, UnsupportedLayer
from export.lowerings.registry import SUPPORTED_LAYER_TYPES

BATCH_AXIS = "batch"
PRODUCER = "lc2d-serve"


@dataclass(frozen=True)
class LayerStep:
    """One call of a layer in the model: which Keras tensors it reads and writes."""

    layer: Any
    inputs: tuple[Any, ...]
    outputs: tuple[Any, ...]

    @property
    def type_name(self) -> str:
        return type(self.layer).__name__


@dataclass(frozen=True)
class ModelWalk:
    """A model as its input, its layer calls in dependency order, and its outputs."""

    input_name: str
    input_tensor: Any
    steps: tuple[LayerStep, ...]
    outputs: tuple[Any, ...]


@dataclass
class LoweredLayer:
    """The strategy chosen for one layer call and the nodes it produced."""

    name: str
    type_name: str
    strategy: str
    nodes: int


@dataclass
class LoweredGraph:
    """The assembled ONNX model and what was done to each layer."""

    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]
    output_names: list[str]
    layers: list[LoweredLayer]


def walk_model(model: Any) -> ModelWalk:
    """The layer calls of a Sequential or functional model with one input, in dependency order."""
    import keras

    functional = getattr(model, "_functional", None) if isinstance(model, keras.Sequential) else model
    if not isinstance(functional, keras.Model) or not hasattr(functional, "_nodes_by_depth"):
        raise ExportError("Expected a built Sequential or functional keras.Model. Received: "
                          f"{type(model).__name__} (subclassed or unbuilt models cannot be walked)")
    if len(functional.inputs) != 1:
        raise ExportError(f"Expected a model with one input. Received {len(functional.inputs)} inputs.")
    steps, input_name = [], None
    for depth in sorted(functional._nodes_by_depth, reverse=True):
        for node in functional._nodes_by_depth[depth]:
            if isinstance(node.operation, keras.layers.InputLayer):
                input_name = node.operation.name
                continue
            steps.append(LayerStep(node.operation, tuple(node.input_tensors), tuple(node.output_tensors)))
    return ModelWalk(input_name or "input", functional.inputs[0], tuple(steps), tuple(functional.outputs))


def strategy_of(step: LayerStep, lc_strategies: dict[str, str]) -> str:
    """The strategy a layer call is lowered with: its entry in ``lc_strategies``, else standard."""
    return lc_strategies.get(step.layer.name, STANDARD)


def _lower_step(step: LayerStep, tensors: dict[int, Tensor], strategy: str,
                ctx: LoweringContext) -> Lowered:
    import keras

    if isinstance(step.layer, keras.Model):
        raise UnsupportedLayer("nested models have no lowering; expected their layers inline")
    if len(step.inputs) != 1 or len(step.outputs) != 1 or id(step.inputs[0]) not in tensors:
        raise UnsupportedLayer(f"takes {len(step.inputs)} inputs and gives {len(step.outputs)} outputs; "
                               "expected one of each")
    lowering = find_lowering(step.type_name, strategy)
    if lowering is None:
        raise UnsupportedLayer(f"no lowering for layer type {step.type_name} (strategy '{strategy}')")
    return lowering(step.layer, tensors[id(step.inputs[0])], ctx)


def _instance_shape(keras_tensor: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in keras_tensor.shape[1:])


def lower_model(walk: ModelWalk, lc_strategies: dict[str, str], ctx: LoweringContext,
                output_names: list[str] | None = None) -> LoweredGraph:
    """Lower every layer call of ``walk`` and assemble the ONNX model (no metadata yet).

    ``output_names`` names the graph outputs, one per model output (the layers asked for with
    ``ExportOptions.outputs``); None: each is named after the tensor that computes it.
    """
    input_shape = _instance_shape(walk.input_tensor)
    tensors = {id(walk.input_tensor): Tensor(walk.input_name, input_shape)}
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    layers: list[LoweredLayer] = []
    problems: list[tuple[str, str, str]] = []
    for step in walk.steps:
        strategy = strategy_of(step, lc_strategies)
        try:
            lowered = _lower_step(step, tensors, strategy, ctx)
        except UnsupportedLayer as err:
            problems.append((step.layer.name, step.type_name, str(err)))
            # A stand-in output lets the layers after it be checked too: all problems at once.
            for out in step.outputs:
                tensors[id(out)] = Tensor(step.layer.name, _instance_shape(out))
            continue
        tensors[id(step.outputs[0])] = lowered.output
        nodes += lowered.nodes
        initializers += lowered.initializers
        layers.append(LoweredLayer(step.layer.name, step.type_name, strategy, len(lowered.nodes)))
    if problems:
        raise UnsupportedLayersError(problems, SUPPORTED_LAYER_TYPES)
    outputs, extra = _graph_outputs(walk, tensors, output_names)
    graph = helper.make_graph(
        nodes + extra, "main",
        [helper.make_tensor_value_info(walk.input_name, onnx.TensorProto.FLOAT, [BATCH_AXIS, *input_shape])],
        [helper.make_tensor_value_info(t.name, onnx.TensorProto.FLOAT, [BATCH_AXIS, *t.shape])
         for t in outputs],
        initializer=initializers)
    return LoweredGraph(_make_model(graph, ctx.opset), walk.input_name, input_shape,
                        [t.name for t in outputs], layers)


def _graph_outputs(walk: ModelWalk, tensors: dict[int, Tensor], names: list[str] | None,
                   ) -> tuple[list[Tensor], list[onnx.NodeProto]]:
    """Output tensors; an Identity node where an output must be renamed, is the input, or repeats
    another output (a layer that lowers to nothing, e.g. Dropout, computes no tensor of its own)."""
    outputs: list[Tensor] = []
    extra: list[onnx.NodeProto] = []
    for i, keras_tensor in enumerate(walk.outputs):
        t = tensors[id(keras_tensor)]
        wanted = names[i] if names else None
        if wanted is None and (t.name == walk.input_name or t.name in {o.name for o in outputs}):
            wanted = f"output_{i}"
        if wanted is not None and wanted != t.name:
            extra.append(helper.make_node("Identity", [t.name], [wanted], name=f"{wanted}/output"))
            t = Tensor(wanted, t.shape)
        outputs.append(t)
    return outputs, extra


def _make_model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", opset)]
    from lc2d import __version__

    model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                              producer_version=__version__)
    # The lowest IR version that carries this opset, so older ONNX Runtime builds can load it.
    model.ir_version = helper.find_min_ir_version_for(opsets)
    return model
