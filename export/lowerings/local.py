"""LocallyConnected2D lowered as two block gathers (rows, then columns) and one batched MatMul.

Keras semantics (implementation 1's ``call``): ``y[n, l, f] = sum_p x[n, window(l, p)] * K[l, p, f]``
over the ``kh * kw * C`` taps of each location's window; with "same" padding, taps off the
input read zero.

Layout: the batch is moved innermost, ``X = (IR, IC, C, N)``. A window is separable, so the
patches are gathered in two steps that each copy contiguous blocks instead of single floats:
rows ``(OR, kh)`` along axis 0 (blocks of ``IC*C*N``), a block-preserving Transpose to
``(OR, IC, kh, C, N)``, then columns ``(OC, kw)`` along axis 1 (blocks of ``kh*C*N``). The
result ``(OR, OC, kw, kh, C, N)`` is each location's patch in ``(kw, kh, C)`` order, and the
kernel is stored permuted to match as ``(OR, OC, F, P)``. The MatMul gives ``(OR, OC, F, N)``;
one Transpose puts the batch first in the layer's output layout. "same" padding appends one
zero row and column (Pad) that off-input taps point at.

ONNX ops: Transpose, [Pad], Gather, Transpose, Gather, Reshape, MatMul, Transpose, [Add],
activation — at most 9 nodes plus the activation, whatever the output size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant, shape_constant
from export.lowerings.locally_connected import (
    finish_output,
    geometry_of,
    index_constant,
    kernel_as,
)
from models.geometry import LocalGeometry


def padded_axis_taps(geo: LocalGeometry, axis: int) -> np.ndarray:
    """``(out_len, k)`` input index of each tap along one axis; off-input taps -> the pad slot."""
    taps, on_input = geo.axis_taps(axis)
    return np.where(on_input, taps, (geo.input_rows, geo.input_cols)[axis])


def rowcol_kernel(layer: Any) -> np.ndarray:
    """The kernel as ``(OR, OC, F, P)`` with patches in ``(kw, kh, C)`` order."""
    geo = geometry_of(layer)
    kh, kw = geo.kernel_size
    local = kernel_as(layer, 1).reshape(geo.output_rows, geo.output_cols, -1, geo.filters)
    if geo.channels_first:  # patch order (C, kh, kw)
        local = local.reshape(*local.shape[:2], geo.channels, kh, kw, geo.filters)
        ordered = local.transpose(0, 1, 5, 4, 3, 2)
    else:  # patch order (kh, kw, C)
        local = local.reshape(*local.shape[:2], kh, kw, geo.channels, geo.filters)
        ordered = local.transpose(0, 1, 5, 3, 2, 4)
    return np.ascontiguousarray(ordered.reshape(geo.output_rows, geo.output_cols, geo.filters, -1))


def lower_locally_connected_local(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``local`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    p = f"{layer.name}/"
    n = {k: p + k for k in ("rows_first", "padded", "pads", "row_taps", "by_row", "row_major",
                            "col_taps", "patches", "patch_shape", "flat_patches", "kernel",
                            "products")}
    out = p + "per_instance"
    nodes = [helper.make_node("Transpose", [x.name], [n["rows_first"]], name=n["rows_first"],
                              perm=[2, 3, 1, 0] if geo.channels_first else [1, 2, 3, 0])]
    inits = []
    source = n["rows_first"]  # (IR, IC, C, N)
    if geo.has_padding_taps:
        nodes.append(helper.make_node("Pad", [source, n["pads"]], [n["padded"]], name=n["padded"]))
        inits.append(constant(n["pads"], [0, 0, 0, 0, 1, 1, 0, 0], np.int64))
        source = n["padded"]
    nodes += [
        helper.make_node("Gather", [source, n["row_taps"]], [n["by_row"]], name=n["by_row"],
                         axis=0),  # (OR, kh, IC, C, N)
        helper.make_node("Transpose", [n["by_row"]], [n["row_major"]], name=n["row_major"],
                         perm=[0, 2, 1, 3, 4]),  # (OR, IC, kh, C, N)
        helper.make_node("Gather", [n["row_major"], n["col_taps"]], [n["patches"]],
                         name=n["patches"], axis=1),  # (OR, OC, kw, kh, C, N)
        helper.make_node("Reshape", [n["patches"], n["patch_shape"]], [n["flat_patches"]],
                         name=n["flat_patches"]),  # (OR, OC, P, N)
        helper.make_node("MatMul", [n["kernel"], n["flat_patches"]], [n["products"]],
                         name=n["products"]),  # (OR, OC, F, N)
        helper.make_node("Transpose", [n["products"]], [out], name=out,
                         perm=[3, 2, 0, 1] if geo.channels_first else [3, 0, 1, 2]),
    ]
    limit = max(geo.input_rows, geo.input_cols) + 1
    inits += [index_constant(n["row_taps"], padded_axis_taps(geo, 0), limit),
              index_constant(n["col_taps"], padded_axis_taps(geo, 1), limit),
              shape_constant(n["patch_shape"], (geo.output_rows, geo.output_cols, geo.patch_size, -1)),
              constant(n["kernel"], rowcol_kernel(layer))]
    body = Lowered(Tensor(out, geo.output_shape()), nodes, inits)
    return body.extend(finish_output(layer, body.output, ctx))
