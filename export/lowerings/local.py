"""LocallyConnected2D lowered as gathered patches and one batched MatMul over locations.

Keras semantics (implementation 1's ``call``): ``y[n, l, f] = sum_p x[n, idx[l, p]] * K[l, p, f]``
with ``idx`` the ``(L, P)`` patch index of the flattened input (off-input taps read a zero slot),
then the output is laid out ``(L, F)`` (channels_last) or ``(F, L)`` (channels_first).

ONNX ops: Reshape, [Pad], Gather, Transpose, MatMul, Transpose, Reshape, [Add], activation —
at most 10 nodes whatever the output size.
"""

from __future__ import annotations

from typing import Any

from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant
from export.lowerings.locally_connected import (
    finish_output,
    flatten_input,
    geometry_of,
    index_constant,
    kernel_as,
)


def lower_locally_connected_local(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``local`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    name = layer.name
    flat = flatten_input(x, geo, name, geo.has_padding_taps)
    names = {k: f"{name}/{k}" for k in ("patch_index", "patches", "by_location", "kernel", "products")}
    out = f"{name}/per_instance"
    nodes = [
        helper.make_node("Gather", [flat.output.name, names["patch_index"]], [names["patches"]],
                         name=names["patches"], axis=1),  # (N, L, P)
        helper.make_node("Transpose", [names["patches"]], [names["by_location"]],
                         name=names["by_location"], perm=[1, 0, 2]),  # (L, N, P)
        helper.make_node("MatMul", [names["by_location"], names["kernel"]], [names["products"]],
                         name=names["products"]),  # (L, N, F)
        helper.make_node("Transpose", [names["products"]], [out], name=out,
                         perm=[1, 2, 0] if geo.channels_first else [1, 0, 2]),
    ]
    inits = [index_constant(names["patch_index"], geo.padded_patch_index(), geo.input_size + 1),
             constant(names["kernel"], kernel_as(layer, 1))]
    shape = (geo.filters, geo.locations) if geo.channels_first else (geo.locations, geo.filters)
    body = flat.extend(Lowered(Tensor(out, shape), nodes, inits))
    return body.extend(finish_output(layer, body.output))
