"""LocallyConnected2D lowered as a Scan over chunks of locations (for large batches).

Keras semantics: as implementation 1, ``y[n, l, f] = sum_p x[n, idx[l, p]] * K[l, p, f]`` with
``idx`` the ``(L, P)`` patch index (off-input taps read a zero slot).

Why: at batch 64 the full patch tensor ``(L, P, N)`` of a large layer is hundreds of MB
(DeepFace L4: 1 GB), so gathering it all and then multiplying streams it through memory twice.
Here the input becomes ``(input_size, N)`` rows once, and a Scan walks the locations in chunks
whose patches (``chunk * P * 64`` floats, about 4 MiB at batch 64) stay in cache between the
Gather that writes them and the MatMul ``(chunk, F, P) x (chunk, P, N)`` that reads them. The
last chunk is padded with zero-weight locations that are sliced away.

The bias costs one pass over the smaller of the input and the output. When the output is the
larger (reference layer 1: 57,600 floats per instance out, 3,072 in), a row of ones is appended
to the input rows, every location gets one more tap reading it, and the kernel's extra column
holds the bias (``P + 1`` taps, ``1 / P`` more multiply-adds instead of an Add over the whole
output). When the input is the larger (DeepFace L5: 48,400 in, 10,000 out), appending that row
would copy the whole input (a tenth of that layer's run), so the bias is added to the output
instead (:func:`bias_in_kernel`). The products ``(L, F, N)`` are viewed as ``(OR, OC, F, N)``
and one Transpose writes the layer's layout, so no Reshape copies the output when the layer
ends the graph.

ONNX ops: Reshape, [Pad], Transpose, [Pad], Scan (body: Gather, MatMul), Reshape, [Slice],
Reshape, Transpose, [Add], activation — at most 9 nodes plus the activation at the top level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings.activations import activated
from export.lowerings.base import (
    Lowered,
    LoweringContext,
    Tensor,
    add_constant,
    constant,
    shape_constant,
)
from export.lowerings.locally_connected import (
    flatten_input,
    geometry_of,
    index_constant,
    kernel_as,
    output_bias,
)
from models.geometry import LocalGeometry

CHUNK_BYTES = 4 << 20  # patch bytes per chunk at batch 64
_REFERENCE_BATCH = 64


def chunk_size(geo: LocalGeometry, element_bytes: int = 4, output_bytes: int | None = None) -> int:
    """Locations per chunk: about CHUNK_BYTES of patches at batch 64 (and at most ``output_bytes``
    of float products, when given), chunks of equal size.

    A divisor of the location count from half that size up is preferred: the last chunk then
    needs no padding, and no Slice copies the products afterwards.
    """
    wanted = max(1, min(geo.locations, CHUNK_BYTES // (geo.patch_size * _REFERENCE_BATCH * element_bytes)))
    if output_bytes is not None:
        wanted = max(1, min(wanted, output_bytes // (geo.filters * _REFERENCE_BATCH * 4)))
    for size in range(wanted, (wanted + 1) // 2 - 1, -1):
        if geo.locations % size == 0:
            return size
    chunks = -(-geo.locations // wanted)
    return -(-geo.locations // chunks)


def _scan_body(prefix: str, rows: str, chunk: int, taps: int, geo: LocalGeometry,
               index_type: int) -> onnx.GraphProto:
    idx, kernel = f"{prefix}chunk_index", f"{prefix}chunk_kernel"
    patches, products = f"{prefix}chunk_patches", f"{prefix}chunk_products"
    return helper.make_graph(
        [helper.make_node("Gather", [rows, idx], [patches], name=patches, axis=0),  # (chunk, P, N)
         helper.make_node("MatMul", [kernel, patches], [products], name=products)],  # (chunk, F, N)
        f"{prefix}chunk",
        [helper.make_tensor_value_info(idx, index_type, [chunk, taps]),
         helper.make_tensor_value_info(kernel, onnx.TensorProto.FLOAT, [chunk, geo.filters, taps])],
        [helper.make_tensor_value_info(products, onnx.TensorProto.FLOAT, [chunk, geo.filters, None])])


def lower_locally_connected_chunked(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``chunked`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    p = f"{layer.name}/"
    chunk = chunk_size(geo)
    chunks = -(-geo.locations // chunk)
    zero_slot = geo.has_padding_taps
    ones = bias_in_kernel(layer, geo)
    taps = geo.patch_size + (1 if ones else 0)
    ones_row = geo.input_size + (1 if zero_slot else 0)  # after the zero slot, when there is one
    index = patch_index(geo, chunks * chunk, taps)
    kernel = padded_kernel(layer, geo, chunks * chunk, taps)
    if ones:  # one more tap reads a row of ones: the bias is the kernel's last column
        index[:, -1] = ones_row
        kernel[:geo.locations, :, -1] = bias_per_location(layer, geo)
    index_init = index_constant(p + "index", index.reshape(chunks, chunk, -1), ones_row + 1)

    flat = flatten_input(x, geo, layer.name, zero_slot)
    rows, stacked = p + "rows", p + "stacked"
    nodes = [helper.make_node("Transpose", [flat.output.name], [rows], name=rows, perm=[1, 0])]
    inits = [index_init, constant(p + "kernel", kernel.reshape(chunks, chunk, geo.filters, -1))]
    if ones:
        with_ones = p + "rows_and_ones"
        nodes.append(helper.make_node("Pad", [rows, p + "ones_pads", p + "one"], [with_ones], name=with_ones))
        inits += [constant(p + "ones_pads", [0, 0, 1, 0], np.int64), constant(p + "one", 1.0)]
        rows = with_ones
    nodes.append(helper.make_node("Scan", [p + "index", p + "kernel"], [stacked], name=stacked,
                                  num_scan_inputs=2,
                                  body=_scan_body(p, rows, chunk, taps, geo, index_init.data_type)))
    bias = None if ones or not layer.use_bias else output_bias(layer)
    return flat.extend(laid_out_products(layer, geo, stacked, chunks * chunk, nodes, inits, ctx, bias))


def bias_in_kernel(layer: Any, geo: LocalGeometry) -> bool:
    """Whether the bias rides in the products (a row of ones appended to the input rows, one
    pass over the input) rather than in an Add (one pass over the output): the smaller wins."""
    return bool(layer.use_bias) and geo.input_size <= geo.output_size


def patch_index(geo: LocalGeometry, padded: int, taps: int) -> np.ndarray:
    """``(padded, taps)`` input rows per location; the padding locations read row 0 (zero weights)."""
    index = np.zeros((padded, taps), np.int64)
    index[:geo.locations, :geo.patch_size] = geo.padded_patch_index()
    return index


def padded_kernel(layer: Any, geo: LocalGeometry, padded: int, taps: int) -> np.ndarray:
    """``(padded, F, taps)`` float32 kernel: the layer's ``P`` taps first, zeros elsewhere."""
    kernel = np.zeros((padded, geo.filters, taps), np.float32)
    kernel[:geo.locations, :, :geo.patch_size] = kernel_as(layer, 1).transpose(0, 2, 1)
    return kernel


def laid_out_products(layer: Any, geo: LocalGeometry, stacked: str, padded: int, nodes: list[onnx.NodeProto],
                      inits: list[onnx.TensorProto], ctx: LoweringContext,
                      bias: np.ndarray | None = None) -> Lowered:
    """The Scan's stacked ``(chunks, chunk, F, N)`` products in the layer's layout, activated.

    ``(L, F, N)`` -> ``(OR, OC, F, N)`` costs nothing; one Transpose then writes the layer's
    layout, named as the layer's output (or its input to the activation): no Reshape follows.
    ``bias`` (shaped like one output instance), when given, is added after the Transpose.
    """
    p = f"{layer.name}/"
    merged = p + "merged"
    nodes = [*nodes, helper.make_node("Reshape", [stacked, p + "merged_shape"], [merged], name=merged)]
    inits = [*inits, shape_constant(p + "merged_shape", (padded, geo.filters, -1))]
    if padded != geo.locations:
        nodes.append(helper.make_node("Slice", [merged, p + "starts", p + "ends"], [p + "kept"],
                                      name=p + "kept"))
        inits += [constant(p + "starts", [0], np.int64), constant(p + "ends", [geo.locations], np.int64)]
        merged = p + "kept"
    grid = p + "grid"
    nodes.append(helper.make_node("Reshape", [merged, p + "grid_shape"], [grid], name=grid))
    inits.append(shape_constant(p + "grid_shape", (geo.output_rows, geo.output_cols, geo.filters, -1)))

    def laid_out(out: str) -> Lowered:
        transposed = out if bias is None else p + "products"
        node = helper.make_node("Transpose", [grid], [transposed], name=transposed,
                                perm=[3, 2, 0, 1] if geo.channels_first else [3, 0, 1, 2])
        lowered = Lowered(Tensor(transposed, geo.output_shape()), [*nodes, node], inits)
        return lowered if bias is None else lowered.extend(add_constant(lowered.output, bias, out))

    return activated(layer.activation, layer.name, laid_out, ctx.opset)


def bias_per_location(layer: Any, geo: LocalGeometry) -> np.ndarray:
    """The bias as ``(L, F)``: one row per output location in row-major order."""
    bias = np.asarray(output_bias(layer), np.float32)
    if geo.channels_first:  # (F, OR, OC)
        bias = bias.transpose(1, 2, 0)
    return bias.reshape(geo.locations, geo.filters)
