"""LocallyConnected2D lowered as a Scan over chunks of locations (for large batches).

Keras semantics: as implementation 1, ``y[n, l, f] = sum_p x[n, idx[l, p]] * K[l, p, f]`` with
``idx`` the ``(L, P)`` patch index (off-input taps read a zero slot).

Why: at batch 64 the full patch tensor ``(L, P, N)`` of a large layer is hundreds of MB
(DeepFace L4: 1 GB), so gathering it all and then multiplying streams it through memory twice.
Here the input becomes ``(input_size, N)`` rows once, and a Scan walks the locations in chunks
whose patches (``chunk * P * 64`` floats, about 4 MiB at batch 64) stay in cache between the
Gather that writes them and the MatMul ``(chunk, F, P) x (chunk, P, N)`` that reads them. The
last chunk is padded with zero-weight locations that are sliced away.

ONNX ops: Reshape, [Pad], Transpose, Scan (body: Gather, MatMul), Reshape, [Slice], Transpose,
Reshape, [Add], activation — at most 9 nodes plus the activation at the top level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant, shape_constant
from export.lowerings.locally_connected import (
    finish_output,
    flatten_input,
    geometry_of,
    index_constant,
    kernel_as,
)
from models.geometry import LocalGeometry

CHUNK_BYTES = 4 << 20  # patch bytes per chunk at batch 64
_REFERENCE_BATCH = 64


def chunk_size(geo: LocalGeometry) -> int:
    """Locations per chunk: about CHUNK_BYTES of patches at batch 64, chunks of equal size."""
    wanted = max(1, min(geo.locations, CHUNK_BYTES // (geo.patch_size * _REFERENCE_BATCH * 4)))
    chunks = -(-geo.locations // wanted)
    return -(-geo.locations // chunks)


def _scan_body(prefix: str, rows: str, chunk: int, geo: LocalGeometry, index_type: int) -> onnx.GraphProto:
    idx, kernel = f"{prefix}chunk_index", f"{prefix}chunk_kernel"
    patches, products = f"{prefix}chunk_patches", f"{prefix}chunk_products"
    return helper.make_graph(
        [helper.make_node("Gather", [rows, idx], [patches], name=patches, axis=0),  # (chunk, P, N)
         helper.make_node("MatMul", [kernel, patches], [products], name=products)],  # (chunk, F, N)
        f"{prefix}chunk",
        [helper.make_tensor_value_info(idx, index_type, [chunk, geo.patch_size]),
         helper.make_tensor_value_info(kernel, onnx.TensorProto.FLOAT, [chunk, geo.filters, geo.patch_size])],
        [helper.make_tensor_value_info(products, onnx.TensorProto.FLOAT, [chunk, geo.filters, None])])


def lower_locally_connected_chunked(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``chunked`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    p = f"{layer.name}/"
    chunk = chunk_size(geo)
    chunks = -(-geo.locations // chunk)
    padded = chunks * chunk
    index = np.zeros((padded, geo.patch_size), np.int64)
    index[:geo.locations] = geo.padded_patch_index()
    kernel = np.zeros((padded, geo.filters, geo.patch_size), np.float32)
    kernel[:geo.locations] = kernel_as(layer, 1).transpose(0, 2, 1)
    index_init = index_constant(p + "index", index.reshape(chunks, chunk, -1), geo.input_size + 1)

    flat = flatten_input(x, geo, layer.name, geo.has_padding_taps)
    rows, stacked, merged = p + "rows", p + "stacked", p + "merged"
    nodes = [
        helper.make_node("Transpose", [flat.output.name], [rows], name=rows, perm=[1, 0]),
        helper.make_node("Scan", [p + "index", p + "kernel"], [stacked], name=stacked,
                         num_scan_inputs=2,
                         body=_scan_body(p, rows, chunk, geo, index_init.data_type)),
        helper.make_node("Reshape", [stacked, p + "merged_shape"], [merged], name=merged),
    ]
    inits = [index_init, constant(p + "kernel", kernel.reshape(chunks, chunk, geo.filters, -1)),
             shape_constant(p + "merged_shape", (padded, geo.filters, -1))]
    if padded != geo.locations:
        nodes.append(helper.make_node("Slice", [merged, p + "starts", p + "ends"], [p + "kept"],
                                      name=p + "kept"))
        inits += [constant(p + "starts", [0], np.int64), constant(p + "ends", [geo.locations], np.int64)]
        merged = p + "kept"
    out = p + "per_instance"
    nodes.append(helper.make_node("Transpose", [merged], [out], name=out,
                                  perm=[2, 1, 0] if geo.channels_first else [2, 0, 1]))
    shape = (geo.filters, geo.locations) if geo.channels_first else (geo.locations, geo.filters)
    body = flat.extend(Lowered(Tensor(out, shape), nodes, inits))
    return body.extend(finish_output(layer, body.output, ctx))
