"""LocallyConnected2D lowered as gathered patches and one batched MatMul over locations.

Keras semantics (implementation 1's ``call``): ``y[n, l, f] = sum_p x[n, idx[l, p]] * K[l, p, f]``
with ``idx`` the ``(L, P)`` patch index of the flattened input (off-input taps read a zero slot),
then the output is laid out ``(L, F)`` (channels_last) or ``(F, L)`` (channels_first).

Layout: the batch is the *innermost* axis while patches are gathered. The input is turned
into ``(input_size, N)`` rows, so Gather copies whole rows of N floats per tap instead of one
float at a time (the element-wise gather of ``(N, input_size)`` dominated the run time at
batch 64: ~20x slower), and the MatMul ``(L, F, P) x (L, P, N) -> (L, F, N)`` reads the
patches as they were written. One final Transpose restores the batch-first layout.

ONNX ops: Reshape, Transpose, [Pad], Gather, MatMul, Transpose, Reshape, [Add], activation —
at most 8 nodes plus the activation, whatever the output size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
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
    names = {k: f"{name}/{k}" for k in ("rows", "patch_index", "patches", "kernel", "products")}
    out = f"{name}/per_instance"
    nodes = [
        helper.make_node("Transpose", [flat.output.name], [names["rows"]], name=names["rows"],
                         perm=[1, 0]),  # (input_size[+1], N)
        helper.make_node("Gather", [names["rows"], names["patch_index"]], [names["patches"]],
                         name=names["patches"], axis=0),  # (L, P, N)
        helper.make_node("MatMul", [names["kernel"], names["patches"]], [names["products"]],
                         name=names["products"]),  # (L, F, N)
        helper.make_node("Transpose", [names["products"]], [out], name=out,
                         perm=[2, 1, 0] if geo.channels_first else [2, 0, 1]),
    ]
    kernel = np.ascontiguousarray(kernel_as(layer, 1).transpose(0, 2, 1))  # (L, F, P)
    inits = [index_constant(names["patch_index"], geo.padded_patch_index(), geo.input_size + 1),
             constant(names["kernel"], kernel)]
    shape = (geo.filters, geo.locations) if geo.channels_first else (geo.locations, geo.filters)
    body = flat.extend(Lowered(Tensor(out, shape), nodes, inits))
    return body.extend(finish_output(layer, body.output))
