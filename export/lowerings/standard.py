"""Lowerings of the standard Keras layers the builders (and common models) use.

Each lowering starts with the Keras semantics it reproduces and the ONNX ops it emits. Tensors
stay in the layer's native Keras layout between layers; the channels_last image layers wrap
their NCHW ONNX op in a pair of Transposes (ONNX Runtime cancels adjacent pairs at load).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from onnx import helper

from export.lowerings.activations import activated, lower_activation
from export.lowerings.base import (
    Lowered,
    LoweringContext,
    Tensor,
    UnsupportedLayer,
    add_constant,
    constant,
    mul_constant,
    output_shape,
    reduce,
    reshape,
    to_numpy,
    transpose,
)

_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)


def same_pads(spatial: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
              dilation: Sequence[int] = (1, 1)) -> list[int]:
    """ONNX ``pads`` (begins then ends) reproducing Keras/TensorFlow "same" padding.

    Total padding per axis is ``max((ceil(I / s) - 1) * s + k_eff - I, 0)``; the smaller half
    goes before, so the extra pixel of an odd total goes after (TensorFlow's rule).
    """
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilation, strict=True):
        k_eff = (k - 1) * d + 1
        total = max((math.ceil(size / s) - 1) * s + k_eff - size, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _spatial(x: Tensor, channels_first: bool) -> tuple[int, int]:
    return (x.shape[1], x.shape[2]) if channels_first else (x.shape[0], x.shape[1])


def _in_nchw(layer: Any, x: Tensor, build: Any, out: str) -> Lowered:
    """Run ``build(nchw_tensor, out_name)`` on NCHW data, transposing around it for channels_last."""
    if layer.data_format == "channels_first":
        return build(x, out)
    to_nchw = transpose(x, _TO_NCHW, f"{layer.name}/input_nchw")
    core = build(to_nchw.output, f"{out}/nchw")
    return to_nchw.extend(core).extend(transpose(core.output, _TO_NHWC, out))


def lower_identity(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Dropout, noise, regularisation and ClassLabels layers: identity at inference; no nodes."""
    return Lowered(x)


def lower_conv2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Conv2D: ``act(conv(x, K) + b)``, K ``(kh, kw, C/groups, F)``; "same" pads as TF.

    ONNX ops: [Transpose], Conv (explicit, possibly asymmetric pads, bias folded in), [Transpose],
    activation.
    """
    cf = layer.data_format == "channels_first"
    pads = [0, 0, 0, 0]
    if layer.padding == "same":
        pads = same_pads(_spatial(x, cf), layer.kernel_size, layer.strides, layer.dilation_rate)
    elif layer.padding != "valid":
        raise UnsupportedLayer(f"padding '{layer.padding}' has no lowering; expected 'valid' or 'same'")
    weights = {f"{layer.name}/kernel": to_numpy(layer.kernel).transpose(3, 2, 0, 1)}
    if layer.use_bias:
        weights[f"{layer.name}/bias"] = to_numpy(layer.bias)
    shape = output_shape(layer, x)

    def conv(t: Tensor, out: str) -> Lowered:
        node = helper.make_node(
            "Conv", [t.name, *weights], [out], name=out, kernel_shape=list(layer.kernel_size),
            strides=list(layer.strides), dilations=list(layer.dilation_rate), pads=pads,
            group=int(layer.groups))
        nchw = shape if cf else (shape[2], shape[0], shape[1])
        return Lowered(Tensor(out, nchw), [node], [constant(k, v) for k, v in weights.items()])

    return activated(layer.activation, layer.name, lambda out: _in_nchw(layer, x, conv, out), ctx.opset)


def _lower_pool(op: str, layer: Any, x: Tensor, extra: dict[str, Any]) -> Lowered:
    cf = layer.data_format == "channels_first"
    strides = layer.strides or layer.pool_size
    pads = [0, 0, 0, 0]
    if layer.padding == "same":
        pads = same_pads(_spatial(x, cf), layer.pool_size, strides)
    shape = output_shape(layer, x)

    def pool(t: Tensor, out: str) -> Lowered:
        node = helper.make_node(op, [t.name], [out], name=out, kernel_shape=list(layer.pool_size),
                                strides=list(strides), pads=pads, **extra)
        return Lowered(Tensor(out, shape if cf else (shape[2], shape[0], shape[1])), [node])

    return _in_nchw(layer, x, pool, layer.name)


def lower_max_pooling2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras MaxPooling2D: window max; "same" pads never win (ONNX MaxPool ignores pads).

    ONNX ops: [Transpose], MaxPool, [Transpose].
    """
    return _lower_pool("MaxPool", layer, x, {})


def lower_average_pooling2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras AveragePooling2D: window mean over the taps on the input ("same" excludes pads).

    ONNX ops: [Transpose], AveragePool (count_include_pad=0), [Transpose].
    """
    return _lower_pool("AveragePool", layer, x, {"count_include_pad": 0})


def _lower_global_pool(op: str, layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    axes = [2, 3] if layer.data_format == "channels_first" else [1, 2]
    return reduce(op, x, axes, bool(layer.keepdims), layer.name, ctx)


def lower_global_average_pooling2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras GlobalAveragePooling2D: mean over rows and cols. ONNX ops: ReduceMean."""
    return _lower_global_pool("ReduceMean", layer, x, ctx)


def lower_global_max_pooling2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras GlobalMaxPooling2D: max over rows and cols. ONNX ops: ReduceMax."""
    return _lower_global_pool("ReduceMax", layer, x, ctx)


def lower_dense(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Dense: ``act(x @ K + b)`` over the last axis. ONNX ops: MatMul, [Add], activation."""
    kernel = f"{layer.name}/kernel"
    shape = (*x.shape[:-1], int(layer.units))

    def build(out: str) -> Lowered:
        mm = out if not layer.use_bias else f"{layer.name}/matmul"
        product = Lowered(Tensor(mm, shape), [helper.make_node("MatMul", [x.name, kernel], [mm], name=mm)],
                          [constant(kernel, to_numpy(layer.kernel))])
        if not layer.use_bias:
            return product
        return product.extend(add_constant(product.output, to_numpy(layer.bias), out))

    return activated(layer.activation, layer.name, build, ctx.opset)


def lower_flatten(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Flatten: reshape to ``(N, prod)`` in native order; channels_first first moves
    channels last (Keras keeps weight order across data formats). ONNX ops: [Transpose], Reshape.
    """
    size = int(np.prod(x.shape))
    if layer.data_format == "channels_first" and len(x.shape) > 1:
        rank = len(x.shape) + 1
        moved = transpose(x, [0, *range(2, rank), 1], f"{layer.name}/channels_last")
        return moved.extend(reshape(moved.output, (size,), layer.name))
    return reshape(x, (size,), layer.name)


def lower_reshape(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Reshape: ``target_shape`` per instance. ONNX ops: Reshape."""
    return reshape(x, output_shape(layer, x), layer.name)


def lower_permute(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Permute: reorder the non-batch axes by ``dims`` (1-based). ONNX ops: Transpose."""
    return transpose(x, [0, *layer.dims], layer.name)


def lower_activation_layer(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Activation: the named activation. ONNX ops: that activation's op(s)."""
    return lower_activation(layer.activation, x, layer.name, ctx.opset)


def lower_relu(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras ReLU: ``max(x, 0)`` capped at ``max_value``, or leaky below 0 (threshold 0 only).

    ONNX ops: Relu [then Clip], or LeakyRelu.
    """
    slope, cap, threshold = float(layer.negative_slope), layer.max_value, float(layer.threshold)
    if threshold != 0.0 or (slope != 0.0 and cap is not None):
        raise UnsupportedLayer("ReLU with a threshold, or with both negative_slope and max_value, "
                               "has no lowering; expected threshold=0 and at most one of them")
    name = layer.name
    if slope != 0.0:
        node = helper.make_node("LeakyRelu", [x.name], [name], name=name, alpha=slope)
        return Lowered(Tensor(name, x.shape), [node])
    if cap is None:
        return Lowered(Tensor(name, x.shape), [helper.make_node("Relu", [x.name], [name], name=name)])
    lo, hi = f"{name}/min", f"{name}/max"
    node = helper.make_node("Clip", [x.name, lo, hi], [name], name=name)
    return Lowered(Tensor(name, x.shape), [node], [constant(lo, 0.0), constant(hi, float(cap))])


def lower_leaky_relu(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras LeakyReLU: ``x`` if positive else ``negative_slope * x``. ONNX ops: LeakyRelu."""
    node = helper.make_node("LeakyRelu", [x.name], [layer.name], name=layer.name,
                            alpha=float(layer.negative_slope))
    return Lowered(Tensor(layer.name, x.shape), [node])


def lower_elu(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras ELU: ``x`` if positive else ``alpha * (exp(x) - 1)``. ONNX ops: Elu."""
    node = helper.make_node("Elu", [x.name], [layer.name], name=layer.name, alpha=float(layer.alpha))
    return Lowered(Tensor(layer.name, x.shape), [node])


def lower_softmax(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Softmax layer over one ``axis``. ONNX ops: Softmax."""
    axis = layer.axis
    if not isinstance(axis, int):
        raise UnsupportedLayer(f"Softmax over several axes {axis} has no lowering; expected one axis")
    node = helper.make_node("Softmax", [x.name], [layer.name], name=layer.name, axis=axis)
    return Lowered(Tensor(layer.name, x.shape), [node])


def lower_batch_normalization(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras BatchNormalization at inference: ``(x - mean) / sqrt(var + eps) * gamma + beta``,
    folded into one scale and one shift along ``axis``. ONNX ops: Mul, Add.
    """
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None:
        raise UnsupportedLayer(f"BatchNormalization over axes {layer.axis} has no lowering; expected one")
    rank = len(x.shape) + 1
    axis = axis % rank
    scale = 1.0 / np.sqrt(to_numpy(layer.moving_variance).astype(np.float64) + layer.epsilon)
    if layer.scale:
        scale = scale * to_numpy(layer.gamma)
    shift = -to_numpy(layer.moving_mean) * scale
    if layer.center:
        shift = shift + to_numpy(layer.beta)
    broadcast = [1] * len(x.shape)
    broadcast[axis - 1] = -1
    scaled = mul_constant(x, scale.reshape(broadcast), f"{layer.name}/scaled")
    return scaled.extend(add_constant(scaled.output, shift.reshape(broadcast), layer.name))


def lower_rescaling(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras Rescaling: ``x * scale + offset``. ONNX ops: Mul, Add."""
    scaled = mul_constant(x, np.asarray(layer.scale, np.float32), f"{layer.name}/scaled")
    return scaled.extend(add_constant(scaled.output, np.asarray(layer.offset, np.float32), layer.name))


def lower_zero_padding2d(layer: Any, x: Tensor, ctx: LoweringContext) -> Lowered:
    """Keras ZeroPadding2D: zeros around rows and cols. ONNX ops: Pad."""
    (top, bottom), (left, right) = layer.padding
    if layer.data_format == "channels_first":
        pads = [0, 0, top, left, 0, 0, bottom, right]
    else:
        pads = [0, top, left, 0, 0, bottom, right, 0]
    name, pads_name = layer.name, f"{layer.name}/pads"
    node = helper.make_node("Pad", [x.name, pads_name], [name], name=name)
    return Lowered(Tensor(name, output_shape(layer, x)), [node], [constant(pads_name, pads, np.int64)])

