"""The ``auto`` policy: time every candidate strategy of each LocallyConnected2D, keep the best.

The layer's documentation recommends benchmarking its implementations; here each candidate is
lowered alone into a one-layer ONNX model and timed in ONNX Runtime on the chosen provider at a
small and a large batch, because the fastest strategy at batch 1 is often not the fastest at
batch 64. The choice minimises the worst slowdown against the best candidate over those batches.
The candidates are the registry's (:func:`export.lowerings.auto_candidates`: float strategies
whose feasibility rule accepts the layer, e.g. ``dense`` only within the dense budget).

Why candidates are timed *interleaved*: this shared machine's speed drifts by up to 2x within
minutes, so candidates timed one after the other compare the machine as much as the graphs (one
such export kept ``local`` for DeepFace L6, 10.3 ms at batch 64, where ``adaptive`` ran in 5.3 ms
in the same bench). All candidates' sessions are loaded at once and timed in
``DEFAULT_AUTO_ROUNDS`` rounds; in each round every candidate runs once untimed (its weights back
in cache after the others ran), then timed runs for at least ``SHARE_MIN_S`` (a sub-millisecond
graph runs dozens of times: three runs of one were too few), the order rotating each round. The
choice compares candidates *within* rounds: a candidate's slowdown at a batch size is the median
over rounds of its time over the best time of that round, so a drift between rounds cancels.
The times recorded in the export are each candidate's median over its rounds. Sessions stop their
threads spinning when a run ends, as the server's do, so an idle session does not slow the next.
After the first round, candidates over ``DROP_FACTOR`` times the best at every batch size stop
being timed (their first-round times are kept): a hopeless candidate costs one round, not three.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import onnx
from onnx import helper

from export.lowerings import STRATEGIES, auto_candidates
from export.lowerings.base import LoweringContext, Tensor
from export.lowerings.locally_connected import geometry_of
from export.runtime import make_session
from models.geometry import LocalGeometry

DEFAULT_AUTO_BATCHES = (1, 64)
DEFAULT_AUTO_ROUNDS = 5
RUNS_PER_ROUND = 3  # at least this many timed runs of each candidate per batch size and round
SHARE_MIN_S = 0.02  # ... and more until this long has passed in the share
ROUND_BUDGET_S = 0.6  # no run starts after this long in one share (beyond the first RUNS_PER_ROUND)
DROP_FACTOR = 3.0  # slower than this times the best at every batch size: no more rounds
TIE_MARGIN = 0.10  # worst-case slowdowns this close to the least one count as a tie
MEMORY_BUDGET_BYTES = 2 << 30  # a candidate whose intermediates need more at a batch size is not timed there


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


@dataclass(frozen=True)
class CandidateTimes:
    """Per candidate and batch size, its median time (ms) in each round it was timed in."""

    rounds: dict[str, dict[int, list[float]]]

    def medians(self) -> dict[str, dict[str, float]]:
        """Each candidate's median over its rounds per batch size (what the export records)."""
        return {name: {str(b): round(statistics.median(r), 4) for b, r in per_batch.items() if r}
                for name, per_batch in self.rounds.items()}

    def paired_slowdowns(self) -> dict[str, dict[str, float]]:
        """Per candidate and batch size, the median over rounds of its time over the best time of
        the same round (:func:`paired_ratio`): the comparison within rounds, where drift cancels."""
        slowdowns: dict[str, dict[str, float]] = {}
        for name, per_batch in self.rounds.items():
            for b, runs in per_batch.items():
                ratio = paired_ratio(runs, [other[b] for other in self.rounds.values() if b in other])
                if ratio is not None:  # always, with ``runs`` among the others
                    slowdowns.setdefault(name, {})[str(b)] = ratio
        return slowdowns


def paired_ratio(target: Sequence[float], others: Sequence[Sequence[float]]) -> float | None:
    """The median over rounds of ``target``'s time over the least of ``others`` in the same round.

    Per-round times of candidates or files timed side by side (``auto``'s candidates, the files of
    ``lc2d bench``): the ratio is taken within each round, so the machine's drift between rounds
    cancels (two identical files timed in 3 rounds differed by up to 17 % in their medians, and by
    3–4 % in 9 rounds of paired ratios, 2026-12-02). Rounds that ``target`` or every other missed
    are left out; None when no round has both.
    """
    ratios = []
    for r, t in enumerate(target):
        rivals = [o[r] for o in others if len(o) > r]
        if rivals:
            ratios.append(t / min(rivals))
    return statistics.median(ratios) if ratios else None


def time_candidates(models: Mapping[str, Callable[[], onnx.ModelProto]], input_shape: tuple[int, ...],
                    provider: str, batches: tuple[int, ...] = DEFAULT_AUTO_BATCHES,
                    rounds: int = DEFAULT_AUTO_ROUNDS,
                    untimed: Mapping[str, set[int]] | None = None) -> CandidateTimes:
    """Each model's median wall time (ms) of one ORT run per batch size and round, timed interleaved.

    ``untimed`` names the batch sizes at which a model is not run (too much memory); its result
    has no entry for them.

    ``models`` maps each candidate to a function building its model: each is built, loaded and
    dropped in turn, so only the sessions are held at once. See the module docstring: every
    session loaded at once, ``rounds`` rounds with the order rotating, each share a warm-up run
    then timed runs (:func:`timed_runs`); hopeless candidates are dropped after the first round.
    After each share an untimed run at the smallest batch with ONNX Runtime's arena shrinkage
    hands the share's activation memory back: otherwise every session keeps its peak (DeepFace L4
    at batch 64: about 1.5 GB each; an export holding all of them was killed for memory).
    """
    if rounds < 1:
        raise ValueError(f"Expected rounds >= 1. Received: rounds={rounds}")
    sessions = {name: make_session(build().SerializeToString(), provider, stop_spinning=True)
                for name, build in models.items()}
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal((b, *input_shape)).astype(np.float32) for b in batches}
    import onnxruntime

    shrink = onnxruntime.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    untimed = untimed or {}
    times: dict[str, dict[int, list[float]]] = {
        name: {b: [] for b in batches if b not in untimed.get(name, set())} for name in sessions}
    live = list(sessions)
    for round_ in range(rounds):
        for batch in batches:
            start = round_ % len(live)
            for name in live[start:] + live[:start]:
                if batch in times[name]:
                    times[name][batch].append(statistics.median(timed_runs(sessions[name], inputs[batch])))
                    sessions[name].run(None, {"x": inputs[min(batches)]}, shrink)
        if round_ == 0:
            live = still_competitive(times, live)
    return CandidateTimes(times)


def timed_runs(session: Any, x: np.ndarray) -> list[float]:
    """One untimed run, then timed runs (ms): at least one, ``RUNS_PER_ROUND`` unless that takes
    over ``ROUND_BUDGET_S``, and more until ``SHARE_MIN_S`` has passed."""
    feed = {"x": x}
    session.run(None, feed)
    runs: list[float] = []
    begin = time.perf_counter()
    while True:
        start = time.perf_counter()
        session.run(None, feed)
        runs.append((time.perf_counter() - start) * 1e3)
        spent = time.perf_counter() - begin
        if spent >= ROUND_BUDGET_S or (len(runs) >= RUNS_PER_ROUND and spent >= SHARE_MIN_S):
            return runs


def still_competitive(times: dict[str, dict[int, list[float]]], live: list[str]) -> list[str]:
    """The candidates within ``DROP_FACTOR`` of the best at some batch size (medians of their
    round times so far)."""
    medians = {name: {b: statistics.median(runs) for b, runs in times[name].items()} for name in live}
    best: dict[int, float] = {}
    for per_batch in medians.values():
        for b, median in per_batch.items():
            best[b] = min(best.get(b, math.inf), median)
    return [name for name in live if any(m <= DROP_FACTOR * best[b] for b, m in medians[name].items())]


def choose_strategy(layer: Any, ctx: LoweringContext, provider: str,
                    batches: tuple[int, ...] = DEFAULT_AUTO_BATCHES,
                    rounds: int = DEFAULT_AUTO_ROUNDS) -> AutoChoice:
    """Time each candidate strategy of ``layer`` per batch size, interleaved, and keep the best.

    The choice minimises the worst slowdown, over the batch sizes, of a candidate against the
    best candidate at that batch size, each slowdown paired within rounds
    (:meth:`CandidateTimes.paired_slowdowns`).
    """
    geo = geometry_of(layer)
    untimed = {s: too_large_at(s, geo, batches) for s in auto_candidates(layer, ctx)}
    models = {s: partial(single_layer_model, layer, s, ctx) for s, skip in untimed.items()
              if len(skip) < len(batches)}
    times = time_candidates(models, geo.input_shape(), provider, batches, rounds, untimed)
    return AutoChoice(least_worst_slowdown(times.paired_slowdowns()), times.medians())


def too_large_at(strategy: str, geo: LocalGeometry, batches: tuple[int, ...]) -> set[int]:
    """The batch sizes at which ``strategy``'s intermediates would exceed ``MEMORY_BUDGET_BYTES``.

    Not timed there, the strategy cannot be chosen (its slowdown there counts as infinite): the
    ``sparse`` strategy's products need 16 GB for DeepFace L4 at batch 64, and timing them
    killed a full ``lc2d bench`` for memory on a 24 GB machine.
    """
    return {b for b in batches if STRATEGIES[strategy].intermediate_bytes(geo, b) > MEMORY_BUDGET_BYTES}


def least_worst_slowdown(timings: dict[str, dict[str, float]]) -> str:
    """The strategy whose largest slowdown against the per-batch best is smallest (``timings``:
    times or slowdowns per strategy and batch size; a missing batch size is infinitely slow).

    A tie (within :data:`TIE_MARGIN` of the least worst-case slowdown) goes to a strategy that
    combines others (``adaptive``), then to the least. Why: ``adaptive`` runs ``local``'s graph
    below batch 16 and ``chunked``'s from there, unchanged, so when it times within the margin
    of the best it *is* the best up to noise, and it also adapts to batch sizes that were not
    timed. Timings on a busy 2-core machine differ by more than 10 % between equal graphs, which
    made the pick flip between ``local`` and ``adaptive`` from one export to the next.
    """
    batches = {b for t in timings.values() for b in t}
    best = {b: min(t[b] for t in timings.values() if b in t) for b in batches}
    worst = {s: max(timings[s].get(b, math.inf) / best[b] for b in batches) for s in timings}
    least = min(worst, key=worst.__getitem__)
    tied = [s for s in timings if worst[s] <= worst[least] * (1 + TIE_MARGIN)]
    combining = [s for s in tied if s in STRATEGIES and STRATEGIES[s].combines]
    return min(combining, key=worst.__getitem__) if combining else least
