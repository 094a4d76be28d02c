"""Keras activation functions as ONNX nodes (element-wise, or Softmax over the last axis).

Keras semantics are those of ``keras.activations`` in Keras 3: e.g. ``leaky_relu`` has slope
0.2, ``gelu`` is the exact (erf) form, ``hard_sigmoid`` is ``relu6(x + 3) / 6``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from onnx import helper

from export.lowerings.base import Lowered, Tensor, UnsupportedLayer, constant

GELU_OPSET = 20  # Gelu joined the standard domain in opset 20
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946

# Activations that are one ONNX op: name -> (op type, attributes).
_SINGLE_OP: dict[str, tuple[str, dict[str, Any]]] = {
    "relu": ("Relu", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softmax": ("Softmax", {"axis": -1}),
    "log_softmax": ("LogSoftmax", {"axis": -1}),
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {"alpha": _SELU_ALPHA, "gamma": _SELU_SCALE}),
    "softplus": ("Softplus", {}),
    "softsign": ("Softsign", {}),
    "exponential": ("Exp", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    "hard_silu": ("HardSwish", {}),
}


def _silu(x: Tensor, out: str) -> Lowered:
    sig = f"{out}/sigmoid"
    nodes = [helper.make_node("Sigmoid", [x.name], [sig], name=sig),
             helper.make_node("Mul", [x.name, sig], [out], name=out)]
    return Lowered(Tensor(out, x.shape), nodes)


def _relu6(x: Tensor, out: str) -> Lowered:
    lo, hi = f"{out}/min", f"{out}/max"
    node = helper.make_node("Clip", [x.name, lo, hi], [out], name=out)
    return Lowered(Tensor(out, x.shape), [node], [constant(lo, 0.0), constant(hi, 6.0)])


def _gelu(x: Tensor, out: str) -> Lowered:
    # 0.5 * x * (1 + erf(x / sqrt(2))), for opsets before Gelu (20).
    names = [f"{out}/{s}" for s in ("scaled", "erf", "one_plus", "x_times")]
    consts = [constant(f"{out}/sqrt2", math.sqrt(2.0)), constant(f"{out}/one", 1.0),
              constant(f"{out}/half", 0.5)]
    nodes = [
        helper.make_node("Div", [x.name, f"{out}/sqrt2"], [names[0]], name=names[0]),
        helper.make_node("Erf", [names[0]], [names[1]], name=names[1]),
        helper.make_node("Add", [names[1], f"{out}/one"], [names[2]], name=names[2]),
        helper.make_node("Mul", [x.name, names[2]], [names[3]], name=names[3]),
        helper.make_node("Mul", [names[3], f"{out}/half"], [out], name=out),
    ]
    return Lowered(Tensor(out, x.shape), nodes, consts)


def _mish(x: Tensor, out: str) -> Lowered:
    sp, th = f"{out}/softplus", f"{out}/tanh"
    nodes = [helper.make_node("Softplus", [x.name], [sp], name=sp),
             helper.make_node("Tanh", [sp], [th], name=th),
             helper.make_node("Mul", [x.name, th], [out], name=out)]
    return Lowered(Tensor(out, x.shape), nodes)


_COMPOSED: dict[str, Callable[[Tensor, str], Lowered]] = {
    "silu": _silu, "swish": _silu, "relu6": _relu6, "gelu": _gelu, "mish": _mish,
}


def activation_name(fn: Any) -> str:
    """The Keras name of an activation function (``"linear"`` for None)."""
    return "linear" if fn is None else str(getattr(fn, "__name__", fn))


def lower_activation(fn: Any, x: Tensor, out: str, opset: int = GELU_OPSET) -> Lowered:
    """Apply the Keras activation ``fn`` to ``x``, writing ``out`` (nothing for linear)."""
    name = activation_name(fn)
    if name == "linear":
        return Lowered(x)
    if name == "gelu" and opset >= GELU_OPSET:  # the exact (erf) form, as keras.activations.gelu
        node = helper.make_node("Gelu", [x.name], [out], name=out, approximate="none")
        return Lowered(Tensor(out, x.shape), [node])
    if name in _SINGLE_OP:
        op, attrs = _SINGLE_OP[name]
        return Lowered(Tensor(out, x.shape), [helper.make_node(op, [x.name], [out], name=out, **attrs)])
    if name in _COMPOSED:
        return _COMPOSED[name](x, out)
    supported = sorted({"linear", *_SINGLE_OP, *_COMPOSED})
    raise UnsupportedLayer(f"activation '{name}' has no lowering; expected one of {supported}")


def activated(fn: Any, name: str, build: Callable[[str], Lowered], opset: int = GELU_OPSET) -> Lowered:
    """``build(pre)`` followed by the activation, so that the final tensor is called ``name``."""
    if activation_name(fn) == "linear":
        return build(name)
    pre = build(f"{name}/linear")
    return pre.extend(lower_activation(fn, pre.output, name, opset))
