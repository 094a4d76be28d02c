"""``auto`` lowering: time every feasible lowering of each LocallyConnected2D, keep the fastest.

The layer's documentation recommends benchmarking its implementations; here each candidate is
lowered alone into a one-layer ONNX model and timed in ONNX Runtime on the chosen provider
(median of a few runs after a warm-up). ``dense`` is a candidate only within the dense budget.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings import LC_STRATEGIES, find_lowering
from export.lowerings.base import LoweringContext, Tensor
from export.lowerings.locally_connected import dense_kernel_bytes, geometry_of
from export.runtime import make_session

DEFAULT_AUTO_BATCH = 8
DEFAULT_AUTO_REPEATS = 5


@dataclass(frozen=True)
class AutoChoice:
    """The fastest lowering of one layer and the median time of each candidate (ms)."""

    strategy: str
    timings_ms: dict[str, float]


def feasible_strategies(layer: Any, ctx: LoweringContext) -> list[str]:
    """The lowerings worth timing: all but ``dense`` when its kernel is over the budget."""
    over = dense_kernel_bytes(geometry_of(layer)) > ctx.dense_budget_bytes
    return [s for s in LC_STRATEGIES if not (s == "dense" and over)]


def single_layer_model(layer: Any, strategy: str, ctx: LoweringContext) -> onnx.ModelProto:
    """A one-layer ONNX model computing ``layer`` with ``strategy`` from an input named ``x``."""
    geo = geometry_of(layer)
    lowering = find_lowering(type(layer).__name__, strategy)
    assert lowering is not None
    lowered = lowering(layer, Tensor("x", geo.input_shape()), ctx)
    graph = helper.make_graph(
        lowered.nodes, f"{layer.name}_{strategy}",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", *geo.input_shape()])],
        [helper.make_tensor_value_info(lowered.output.name, onnx.TensorProto.FLOAT,
                                       ["batch", *lowered.output.shape])],
        initializer=lowered.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ctx.opset)])


def time_model(model: onnx.ModelProto, input_shape: tuple[int, ...], provider: str,
               batch: int = DEFAULT_AUTO_BATCH, repeats: int = DEFAULT_AUTO_REPEATS) -> float:
    """Median wall time (ms) of one ORT run of ``model`` on a random batch."""
    session = make_session(model.SerializeToString(), provider)
    x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
    session.run(None, {"x": x})  # warm-up: allocations and first-run kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def choose_lowering(layer: Any, ctx: LoweringContext, provider: str,
                    batch: int = DEFAULT_AUTO_BATCH, repeats: int = DEFAULT_AUTO_REPEATS) -> AutoChoice:
    """Time each feasible lowering of ``layer`` and return the fastest with all timings."""
    shape = geometry_of(layer).input_shape()
    timings = {s: round(time_model(single_layer_model(layer, s, ctx), shape, provider, batch, repeats), 4)
               for s in feasible_strategies(layer, ctx)}
    return AutoChoice(min(timings, key=lambda s: timings[s]), timings)
