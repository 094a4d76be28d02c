"""Pieces shared by the three LocallyConnected2D lowerings (local, dense, sparse).

All three start from the input flattened per instance, in its native layout (the flat index
that :class:`models.geometry.LocalGeometry` uses), and end the way ``LocallyConnected2D.call``
does: reshape to the native output shape, add the ``(OR, OC, F)`` bias *reshaped* (not
transposed) to that shape — tf_keras's channels_first quirk — then apply the activation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper

from export.lowerings.activations import activated
from export.lowerings.base import Lowered, LoweringContext, Tensor, add_constant, constant, reshape, to_numpy
from models.geometry import LocalGeometry
from models.kernels import convert_kernel


def geometry_of(layer: Any) -> LocalGeometry:
    """The layer's geometry (the layer must be built)."""
    if layer.geometry is None:
        raise ValueError(f"Layer '{layer.name}' is not built. Expected a built LocallyConnected2D.")
    return layer.geometry


def kernel_as(layer: Any, implementation: int) -> np.ndarray:
    """The layer's kernel in ``implementation``'s layout, whatever layout it is stored in."""
    geo = geometry_of(layer)
    kernel = to_numpy(layer.kernel)
    converted = convert_kernel(kernel, geo, implementation, layer.implementation)
    if implementation == 2 and layer.implementation == 2:
        converted = converted * geo.connectivity_mask()  # masked entries never count
    return np.asarray(converted, dtype=np.float32)


def flatten_input(x: Tensor, geo: LocalGeometry, prefix: str, zero_slot: bool) -> Lowered:
    """``x`` as ``(N, input_size)``, plus one zero column at the end when ``zero_slot``."""
    flat = reshape(x, (geo.input_size,), f"{prefix}/flat")
    if not zero_slot:
        return flat
    out, pads = f"{prefix}/flat_padded", f"{prefix}/pads"
    node = helper.make_node("Pad", [flat.output.name, pads], [out], name=out)
    padded = Lowered(Tensor(out, (geo.input_size + 1,)), [node], [constant(pads, [0, 0, 0, 1], np.int64)])
    return flat.extend(padded)


def finish_output(layer: Any, y: Tensor, ctx: LoweringContext) -> Lowered:
    """Reshape ``y`` to the native output shape, add the bias, apply the activation."""
    geo = geometry_of(layer)
    name = layer.name

    def build(out: str) -> Lowered:
        native = y.shape == geo.output_shape()  # already laid out: no Reshape needed
        if not layer.use_bias:
            return reshape(y, geo.output_shape(), out)
        shaped = Lowered(y) if native else reshape(y, geo.output_shape(), f"{name}/output")
        return shaped.extend(add_constant(shaped.output, output_bias(layer), out))

    return activated(layer.activation, name, build, ctx.opset)


def output_bias(layer: Any) -> np.ndarray:
    """The bias shaped like one output instance (Keras stores it that way, flattened or not)."""
    return to_numpy(layer.bias).reshape(geometry_of(layer).output_shape())


def index_constant(name: str, index: np.ndarray, limit: int) -> Any:
    """Gather indices as int32 when they fit (half the memory of int64)."""
    dtype = np.int32 if limit < 2**31 else np.int64
    return constant(name, index, dtype)
