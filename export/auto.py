"""The ``auto`` policy: time every candidate strategy of each LocallyConnected2D, keep the best.

The layer's documentation recommends benchmarking its implementations; here each candidate is
lowered alone into a one-layer ONNX model and timed in ONNX Runtime on the chosen provider
(median of a few runs after a warm-up) at a small and a large batch, because the fastest
strategy at batch 1 is often not the fastest at batch 64. The choice minimises the worst
slowdown against the best candidate over those batches. The candidates are the registry's
(:func:`export.lowerings.auto_candidates`: float strategies whose feasibility rule accepts the
layer, e.g. ``dense`` only within the dense budget).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings import STRATEGIES, auto_candidates
from export.lowerings.base import LoweringContext, Tensor
from export.lowerings.locally_connected import geometry_of
from export.runtime import make_session

DEFAULT_AUTO_BATCHES = (1, 64)
DEFAULT_AUTO_REPEATS = 5
TIME_BUDGET_S = 2.0  # per candidate and batch, after the warm-up run


@dataclass(frozen=True)
class AutoChoice:
    """The chosen strategy of one layer and each candidate's median time (ms) per batch size."""

    strategy: str
    timings_ms: dict[str, dict[str, float]]


def single_layer_model(layer: Any, strategy: str, ctx: LoweringContext) -> onnx.ModelProto:
    """A one-layer ONNX model computing ``layer`` with ``strategy`` from an input named ``x``."""
    geo = geometry_of(layer)
    lowered = STRATEGIES[strategy].lowering(layer, Tensor("x", geo.input_shape()), ctx)
    graph = helper.make_graph(
        lowered.nodes, f"{layer.name}_{strategy}",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", *geo.input_shape()])],
        [helper.make_tensor_value_info(lowered.output.name, onnx.TensorProto.FLOAT,
                                       ["batch", *lowered.output.shape])],
        initializer=lowered.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", ctx.opset)])


def time_model(model: onnx.ModelProto, input_shape: tuple[int, ...], provider: str,
               batches: tuple[int, ...] = DEFAULT_AUTO_BATCHES,
               repeats: int = DEFAULT_AUTO_REPEATS) -> dict[str, float]:
    """Median wall time (ms) of one ORT run of ``model`` on a random batch, per batch size.

    Each batch size gets a warm-up run, then up to ``repeats`` timed runs within
    ``TIME_BUDGET_S`` (at least one), so a very slow candidate costs seconds, not minutes.
    """
    session = make_session(model.SerializeToString(), provider)
    rng = np.random.default_rng(0)
    medians = {}
    for batch in batches:
        x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        session.run(None, {"x": x})  # warm-up: allocations and first-run kernels
        times: list[float] = []
        deadline = time.perf_counter() + TIME_BUDGET_S
        while len(times) < repeats and (not times or time.perf_counter() < deadline):
            start = time.perf_counter()
            session.run(None, {"x": x})
            times.append((time.perf_counter() - start) * 1e3)
        medians[str(batch)] = round(statistics.median(times), 4)
    return medians


def choose_strategy(layer: Any, ctx: LoweringContext, provider: str,
                    batches: tuple[int, ...] = DEFAULT_AUTO_BATCHES,
                    repeats: int = DEFAULT_AUTO_REPEATS) -> AutoChoice:
    """Time each candidate strategy of ``layer`` per batch size and keep the best overall.

    The choice minimises the worst ratio, over the batch sizes, of a candidate's time to the
    best candidate's time at that batch size.
    """
    shape = geometry_of(layer).input_shape()
    timings = {s: time_model(single_layer_model(layer, s, ctx), shape, provider, batches, repeats)
               for s in auto_candidates(layer, ctx)}
    return AutoChoice(least_worst_slowdown(timings), timings)


def least_worst_slowdown(timings: dict[str, dict[str, float]]) -> str:
    """The strategy whose largest slowdown against the per-batch best is smallest."""
    batches = next(iter(timings.values())).keys()
    best = {b: min(t[b] for t in timings.values()) for b in batches}
    return min(timings, key=lambda s: max(timings[s][b] / best[b] for b in batches))
