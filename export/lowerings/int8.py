"""LocallyConnected2D lowered as the ``chunked`` Scan with 8-bit integer products (opt-in).

``y[n, l, f] = x_scale[n] * w_scale[l, f] * sum_p (xq[n, p] - x_zero[n]) * (wq[l, f, p] - 128)
+ bias[l, f]``, computed by ``MatMulInteger`` with int32 sums:

* **Weights:** quantised once, symmetrically, per location and filter (``w_scale[l, f] =
  max_p |K[l, p, f]| / 127``), stored as uint8 with zero point 128 (``wq - 128`` in
  [-127, 127]). The scale factors out of the sum over taps, so it is exact to apply it after.
* **Inputs:** quantised at run time, asymmetrically, **per instance** (``QuantizeLinear`` along
  the batch axis, the range always holding 0 so that "same" padding's zero slot is exact).
  An instance's answer therefore does not depend on the other instances of its batch, which a
  batching server needs; ONNX Runtime's per-tensor dynamic quantisation would.
* **Why uint8 times uint8:** ONNX Runtime's x86 kernel for unsigned-times-signed operands sums
  pairs of products in 16 bits and can saturate on CPUs without VNNI; the unsigned-times-unsigned
  kernel widens first. Its speed against the float products is measured by ``lc2d bench``
  (docs/performance.md).

The patches stay uint8 (a quarter of the float bytes) between their Gather and the
``MatMulInteger`` of each chunk; the dequantisation (DequantizeLinear with the weight scales, a
Mul by the input scales, the bias Add) runs on the chunk while it is in a core's L2 cache, and
the output is laid out as in ``chunked``. Dense and other layers stay float. ``auto`` never
chooses this lowering: it changes the numbers (see docs/export.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings.base import Lowered, LoweringContext, Tensor, constant
from export.lowerings.chunked import (
    bias_per_location,
    chunk_size,
    laid_out_products,
    padded_kernel,
    patch_index,
)
from export.lowerings.locally_connected import flatten_input, geometry_of, index_constant

WEIGHT_ZERO_POINT = 128
L2_PRODUCT_BYTES = 512 << 10  # float products per chunk at batch 64: a core's L2 cache here
_TINY_RANGE = 1e-30  # an all-zero instance: any positive scale quantises it to its zero point


def quantize_kernel(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(L, F, P)`` float kernel -> uint8 values (zero point 128) and ``(L, F)`` scales.

    Symmetric per row: ``q = round(k / s) + 128`` with ``s = max |k| / 127`` (1 for a zero row).
    """
    peak = np.max(np.abs(kernel), axis=-1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(kernel / scale[..., None]), -127, 127) + WEIGHT_ZERO_POINT
    return q.astype(np.uint8), scale


def _quantize_per_instance(flat: str, p: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str,
                                                         str, str]:
    """Nodes quantising ``flat`` ``(N, S)`` per instance; returns (nodes, inits, xq, scale, zero).

    ``low = min(0, min x)``, ``high = max(0, max x)``, ``scale = (high - low) / 255`` and
    ``zero = round(-low / scale)``, as ``DynamicQuantizeLinear`` does for a whole tensor.
    """
    nodes: list[onnx.NodeProto] = []

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [p + out], name=p + out, **attrs))
        return p + out

    low = node("Min", [node("ReduceMin", [flat, p + "axis1"], "x_min", keepdims=0), p + "zero_f"], "x_low")
    high = node("Max", [node("ReduceMax", [flat, p + "axis1"], "x_max", keepdims=0), p + "zero_f"], "x_high")
    spread = node("Max", [node("Sub", [high, low], "x_range"), p + "tiny"], "x_range_positive")
    scale = node("Div", [spread, p + "levels"], "x_scale")
    zero_f = node("Neg", [node("Div", [low, scale], "x_low_steps")], "x_zero_steps")
    clipped = node("Clip", [zero_f, p + "zero_f", p + "levels"], "x_zero_clipped")
    zero = node("Cast", [node("Round", [clipped], "x_zero_rounded")], "x_zero", to=onnx.TensorProto.UINT8)
    xq = node("QuantizeLinear", [flat, scale, zero], "x_q", axis=0)
    inits = [constant(p + "axis1", [1], np.int64), constant(p + "zero_f", 0.0),
             constant(p + "tiny", _TINY_RANGE), constant(p + "levels", 255.0)]
    return nodes, inits, xq, scale, zero


def _scan_body(p: str, rows: str, zero_points: str, x_scale: str, chunk: int, geo: Any, bias: bool,
               index_type: int) -> onnx.GraphProto:
    idx, kernel, w_scale, b = p + "chunk_index", p + "chunk_kernel", p + "chunk_scale", p + "chunk_bias"
    patches, sums, rows_of_sums = p + "chunk_patches", p + "chunk_sums", p + "chunk_sum_rows"
    scaled, dequantized, out = p + "chunk_scaled", p + "chunk_dequantized", p + "chunk_products"
    nodes = [
        helper.make_node("Gather", [rows, idx], [patches], name=patches, axis=0),  # (chunk, P, N) uint8
        helper.make_node("MatMulInteger", [kernel, patches, p + "weight_zero", zero_points], [sums],
                         name=sums),  # (chunk, F, N) int32
        # (chunk * F, N): one weight scale per row, so the int32 -> float conversion applies it
        helper.make_node("Reshape", [sums, p + "sum_rows_shape"], [rows_of_sums], name=rows_of_sums),
        helper.make_node("DequantizeLinear", [rows_of_sums, w_scale], [scaled], name=scaled, axis=0),
        helper.make_node("Reshape", [scaled, p + "chunk_shape"], [scaled + "_3d"], name=scaled + "_3d"),
        helper.make_node("Mul", [scaled + "_3d", x_scale], [dequantized if bias else out], name=dequantized),
    ]
    uint8, float32 = onnx.TensorProto.UINT8, onnx.TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info(idx, index_type, [chunk, geo.patch_size]),
              helper.make_tensor_value_info(kernel, uint8, [chunk, geo.filters, geo.patch_size]),
              helper.make_tensor_value_info(w_scale, float32, [chunk * geo.filters])]
    if bias:
        nodes.append(helper.make_node("Add", [dequantized, b], [out], name=out))
        inputs.append(helper.make_tensor_value_info(b, float32, [chunk, geo.filters, 1]))
    output = helper.make_tensor_value_info(out, float32, [chunk, geo.filters, None])
    return helper.make_graph(nodes, f"{p}chunk", inputs, [output])


def lower_locally_connected_int8(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Lower a LocallyConnected2D with the ``int8`` strategy (see the module docstring)."""
    geo = geometry_of(layer)
    p = f"{layer.name}/"
    # uint8 patches; the products' dequantisation (three passes) stays in a core's L2 cache
    chunk = chunk_size(geo, element_bytes=1, output_bytes=L2_PRODUCT_BYTES)
    chunks = -(-geo.locations // chunk)
    padded = chunks * chunk
    zero_slot = geo.has_padding_taps
    index = patch_index(geo, padded, geo.patch_size)
    kernel_q, w_scale = quantize_kernel(padded_kernel(layer, geo, padded, geo.patch_size))
    index_init = index_constant(p + "index", index.reshape(chunks, chunk, -1), geo.input_size + 1)
    scan_inputs = [p + "index", p + "kernel_q", p + "weight_scale"]
    inits = [index_init, constant(p + "kernel_q", kernel_q.reshape(chunks, chunk, geo.filters, -1), np.uint8),
             constant(p + "weight_scale", w_scale.reshape(chunks, chunk * geo.filters)),
             constant(p + "sum_rows_shape", [chunk * geo.filters, -1], np.int64),
             constant(p + "chunk_shape", [chunk, geo.filters, -1], np.int64),
             constant(p + "weight_zero", WEIGHT_ZERO_POINT, np.uint8),
             constant(p + "columns_shape", [1, 1, -1], np.int64),
             constant(p + "zero_points_shape", [chunk, 1, 1], np.int64)]
    if layer.use_bias:
        bias = np.zeros((padded, geo.filters), np.float32)
        bias[:geo.locations] = bias_per_location(layer, geo)
        inits.append(constant(p + "bias", bias.reshape(chunks, chunk, geo.filters, 1)))
        scan_inputs.append(p + "bias")

    flat = flatten_input(x, geo, layer.name, zero_slot)
    nodes, quant_inits, xq, x_scale, x_zero = _quantize_per_instance(flat.output.name, p)
    rows, zero_rows, zero_points, scale_row = p + "rows_q", p + "zero_row", p + "zero_points", p + "scale_row"
    nodes += [
        helper.make_node("Transpose", [xq], [rows], name=rows, perm=[1, 0]),  # (S, N) uint8
        # MatMulInteger takes one zero point per column of each chunk's (P, N) patches: (chunk, 1, N)
        helper.make_node("Reshape", [x_zero, p + "columns_shape"], [zero_rows], name=zero_rows),
        helper.make_node("Expand", [zero_rows, p + "zero_points_shape"], [zero_points], name=zero_points),
        helper.make_node("Reshape", [x_scale, p + "columns_shape"], [scale_row], name=scale_row),
    ]
    stacked = p + "stacked"
    nodes.append(helper.make_node(
        "Scan", scan_inputs, [stacked], name=stacked, num_scan_inputs=len(scan_inputs),
        body=_scan_body(p, rows, zero_points, scale_row, chunk, geo, layer.use_bias, index_init.data_type)))
    return flat.extend(laid_out_products(layer, geo, stacked, padded, nodes, inits + quant_inits, ctx))
