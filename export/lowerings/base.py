"""What every lowering takes and returns, and the few ONNX building blocks they share.

A lowering is a pure function ``(layer, x, ctx) -> Lowered``: it reads the layer's config and
weights, never mutates anything, and returns the nodes and initializers that compute the layer
from the tensor ``x`` (which is in the layer's native Keras layout, batch first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.options import DEFAULT_DENSE_BUDGET_BYTES, DEFAULT_OPSET


class UnsupportedLayer(Exception):  # noqa: N818 - a signal collected by the graph, not raised to users
    """Raised by a lowering for a layer configuration it cannot express; the graph collects these."""


@dataclass(frozen=True)
class Tensor:
    """An ONNX tensor name and the shape of one instance (no batch axis)."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class LoweringContext:
    """Options shared by every lowering of one export."""

    opset: int = DEFAULT_OPSET
    dense_budget_bytes: int = DEFAULT_DENSE_BUDGET_BYTES


@dataclass
class Lowered:
    """Nodes and initializers that compute a layer, and the tensor they produce."""

    output: Tensor
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)

    def extend(self, other: Lowered) -> Lowered:
        """This lowering followed by ``other`` (which reads this one's output)."""
        return Lowered(other.output, self.nodes + other.nodes, self.initializers + other.initializers)


Lowering = Callable[[Any, Tensor, LoweringContext], Lowered]


def constant(name: str, value: Any, dtype: Any = np.float32) -> onnx.TensorProto:
    """An initializer holding ``value`` as ``dtype``."""
    return numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name)


def shape_constant(name: str, shape: Sequence[int]) -> onnx.TensorProto:
    """An int64 initializer for a Reshape target (0 copies the batch, -1 infers)."""
    return constant(name, list(shape), np.int64)


def reshape(x: Tensor, shape: tuple[int, ...], out: str) -> Lowered:
    """Reshape every instance of ``x`` to ``shape`` (the batch axis is kept)."""
    target = f"{out}/shape"
    node = helper.make_node("Reshape", [x.name, target], [out], name=out)
    return Lowered(Tensor(out, shape), [node], [shape_constant(target, (-1, *shape))])


def transpose(x: Tensor, perm: Sequence[int], out: str) -> Lowered:
    """Transpose with ``perm`` over the full (batched) axes; perm[0] must be the batch axis."""
    shape = tuple(x.shape[p - 1] for p in perm[1:]) if perm and perm[0] == 0 else x.shape
    node = helper.make_node("Transpose", [x.name], [out], name=out, perm=list(perm))
    return Lowered(Tensor(out, shape), [node])


def add_constant(x: Tensor, value: np.ndarray, out: str) -> Lowered:
    """``x + value`` with ``value`` broadcast from the right (e.g. a bias)."""
    name = f"{out}/value"
    node = helper.make_node("Add", [x.name, name], [out], name=out)
    return Lowered(Tensor(out, x.shape), [node], [constant(name, value)])


def mul_constant(x: Tensor, value: np.ndarray, out: str) -> Lowered:
    """``x * value`` with ``value`` broadcast from the right."""
    name = f"{out}/value"
    node = helper.make_node("Mul", [x.name, name], [out], name=out)
    return Lowered(Tensor(out, x.shape), [node], [constant(name, value)])


def reduce(op: str, x: Tensor, axes: Sequence[int], keepdims: bool, out: str,
           ctx: LoweringContext) -> Lowered:
    """A Reduce* node over batched ``axes``; axes are an input from opset 18 (13 for ReduceSum)."""
    axes_as_input = ctx.opset >= (13 if op == "ReduceSum" else 18)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape, start=1)
                  if keepdims or i not in axes)
    if axes_as_input:
        name = f"{out}/axes"
        node = helper.make_node(op, [x.name, name], [out], name=out, keepdims=int(keepdims))
        return Lowered(Tensor(out, shape), [node], [constant(name, list(axes), np.int64)])
    node = helper.make_node(op, [x.name], [out], name=out, axes=list(axes), keepdims=int(keepdims))
    return Lowered(Tensor(out, shape), [node])


def to_numpy(variable: Any) -> np.ndarray:
    """A Keras variable's value as a float32 NumPy array."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


def output_shape(layer: Any, x: Tensor) -> tuple[int, ...]:
    """The layer's output shape for one instance, from Keras's own shape rule."""
    shape = layer.compute_output_shape((None, *x.shape))
    return tuple(int(d) for d in shape[1:])
