"""LocallyConnected2D lowered from the connected weights only, with standard operators.

Keras semantics: ``y[n, l, f] = sum_p x[n, idx[l, p]] * W[l, p, f]`` summed over the taps of
location ``l`` that lie on the input (implementation 3 stores exactly those weights). Standard
ONNX has no sparse product and ONNX Runtime densifies sparse initializers at load, so the sum is
written as a gather of each location's inputs, an element-wise product with the weights, and a
reduction over the fixed fan-in ``P``. The few short fan-ins of "same" padding are filled with
zero-weight taps that read a zero slot, so the stored weights are the non-zeros plus those taps;
no ``(input_size, output_size)`` kernel exists anywhere.

ONNX ops: Reshape, [Pad], Gather, Reshape, Mul, ReduceSum, [Transpose], Reshape, [Add],
activation — at most 10 nodes.
"""

from __future__ import annotations

from typing import Any

from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant, reduce, reshape, transpose
from export.lowerings.locally_connected import (
    finish_output,
    flatten_input,
    geometry_of,
    index_constant,
    kernel_as,
)
from models.geometry import LocalGeometry


def sparse_activation_bytes(geo: LocalGeometry, batch: int) -> int:
    """Bytes of the largest intermediates at ``batch``: the gathered taps and their products.

    The products are ``(batch, L, P, F)`` float32 before the reduction: 16 GB for DeepFace L4 at
    batch 64, which is why ``auto`` does not time this strategy there (``export.auto``).
    """
    return 4 * batch * geo.locations * geo.patch_size * (geo.filters + 1)


def lower_locally_connected_sparse(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``sparse`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    name = layer.name
    L, P, F = geo.locations, geo.patch_size, geo.filters
    flat = flatten_input(x, geo, name, geo.has_padding_taps)
    index, patches, weights, products = (f"{name}/{k}" for k in ("tap_index", "taps", "weights", "products"))
    gather = Lowered(Tensor(patches, (L, P)), [helper.make_node(
        "Gather", [flat.output.name, index], [patches], name=patches, axis=1)],
        [index_constant(index, geo.padded_patch_index(), geo.input_size + 1)])
    column = reshape(gather.output, (L, P, 1), f"{name}/taps_column")
    multiply = Lowered(Tensor(products, (L, P, F)), [helper.make_node(
        "Mul", [column.output.name, weights], [products], name=products)],
        [constant(weights, kernel_as(layer, 1))])
    body = flat.extend(gather).extend(column).extend(multiply)
    body = body.extend(reduce("ReduceSum", body.output, [2], False, f"{name}/sums", ctx))  # (N, L, F)
    if geo.channels_first:
        body = body.extend(transpose(body.output, [0, 2, 1], f"{name}/filters_first"))
    return body.extend(finish_output(layer, body.output, ctx))
