"""LocallyConnected2D lowered as one MatMul with the masked dense kernel.

Keras semantics (implementation 2's ``call``): ``y = x_flat @ reshape(K * mask, (IR*IC*C,
OR*OC*F))`` — outputs already in the native layout. Memory is ``input_size * output_size``
floats whatever the implementation the weights came from, so the strategy refuses kernels over
the context's dense budget up front (DeepFace's L4 would need 11.45 GiB).

ONNX ops: Reshape, MatMul, Reshape, [Add], activation — at most 5 nodes plus the activation.
"""

from __future__ import annotations

from typing import Any

from onnx import helper

from export.errors import DenseKernelTooLargeError
from export.lowerings.base import Lowered, LoweringContext, Tensor, constant
from export.lowerings.locally_connected import finish_output, flatten_input, geometry_of, kernel_as
from models.geometry import LocalGeometry


def dense_kernel_bytes(geo: LocalGeometry) -> int:
    """Bytes of the float32 ``(input_size, output_size)`` kernel of the dense lowering."""
    return geo.input_size * geo.output_size * 4


def dense_budget_error(layer: Any, ctx: LoweringContext) -> DenseKernelTooLargeError | None:
    """The dense strategy's feasibility rule: its kernel must fit ``ctx.dense_budget_bytes``."""
    size = dense_kernel_bytes(geometry_of(layer))
    if size > ctx.dense_budget_bytes:
        return DenseKernelTooLargeError(layer.name, size, ctx.dense_budget_bytes)
    return None


def lower_locally_connected_dense(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``dense`` strategy (see the module docstring)."""
    refusal = dense_budget_error(layer, ctx)
    if refusal is not None:  # the same rule as the registry's, for direct calls
        raise refusal
    geo = geometry_of(layer)
    name = layer.name
    flat = flatten_input(x, geo, name, zero_slot=False)
    kernel, out = f"{name}/dense_kernel", f"{name}/products"
    weights = kernel_as(layer, 2).reshape(geo.input_size, geo.output_size)
    product = Lowered(Tensor(out, (geo.output_size,)), [helper.make_node(
        "MatMul", [flat.output.name, kernel], [out], name=out)], [constant(kernel, weights)])
    body = flat.extend(product)
    return body.extend(finish_output(layer, body.output, ctx))
