"""The ``auto`` policy's timing: candidates timed interleaved over rounds, hopeless ones dropped
after the first round, and the least-worst-slowdown choice."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export import auto


def chain(matmuls: int, width: int = 256) -> onnx.ModelProto:
    """``x [batch, width]`` through ``matmuls`` MatMuls with a fixed random kernel (Relu when 0)."""
    weights = np.random.default_rng(0).normal(0, 0.1, (width, width)).astype(np.float32)
    kernel = numpy_helper.from_array(weights, "k")
    nodes, last = [], "x"
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [last, "k"], [f"h{i}"]))
        last = f"h{i}"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             ["batch", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
                              [kernel] if matmuls else [])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_time_candidates_times_every_candidate_at_every_batch_and_ranks_a_much_slower_one_last(
        monkeypatch) -> None:
    calls: dict[int, int] = {}  # shares timed per session
    original = auto.timed_runs

    def counting(session: object, x: np.ndarray) -> list[float]:
        calls[id(session)] = calls.get(id(session), 0) + 1
        return original(session, x)

    monkeypatch.setattr(auto, "timed_runs", counting)
    models = {"light": lambda: chain(0), "heavy": lambda: chain(100)}
    times = auto.time_candidates(models, (256,), "CPUExecutionProvider", batches=(1, 8), rounds=3)
    assert [len(times.rounds["light"][b]) for b in (1, 8)] == [3, 3]  # one median per round it ran in
    assert [len(times.rounds["heavy"][b]) for b in (1, 8)] == [1, 1]
    timings = times.medians()
    assert set(timings) == {"light", "heavy"} and all(set(t) == {"1", "8"} for t in timings.values())
    # 100 chained 256x256 MatMuls against one Relu: hundreds of times slower, on any load
    assert all(timings["heavy"][b] > auto.DROP_FACTOR * timings["light"][b] for b in ("1", "8"))
    # the light one ran every round at both batch sizes; the heavy one only in the first round
    assert sorted(calls.values()) == [2, 2 * 3]
    assert auto.least_worst_slowdown(timings) == "light"
    assert auto.least_worst_slowdown(times.paired_slowdowns()) == "light"


def test_timed_runs_of_a_fast_graph_fill_the_share_and_a_slow_one_stops_at_the_budget(monkeypatch) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(chain(0).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    runs = auto.timed_runs(session, x)
    # a Relu of 256 floats takes microseconds: far more than RUNS_PER_ROUND runs within SHARE_MIN_S
    assert len(runs) > 10 * auto.RUNS_PER_ROUND and sum(runs) / 1e3 < auto.ROUND_BUDGET_S
    monkeypatch.setattr(auto, "ROUND_BUDGET_S", 0.0)  # every run is over the budget: one run only
    assert len(auto.timed_runs(session, x)) == 1


def test_paired_slowdowns_compare_candidates_within_rounds() -> None:
    # the machine ran 3x slower in rounds 1 and 2; y was 10 % slower than x in two rounds of three
    # and 3 % faster in the last: the medians over rounds (x 3.0, y 2.9) would pick y
    times = auto.CandidateTimes({"x": {1: [1.0, 3.0, 3.0]}, "y": {1: [1.1, 3.3, 2.9]},
                                 "hopeless": {1: [5.0]}})  # dropped after the first round
    slowdowns = times.paired_slowdowns()
    assert slowdowns["x"]["1"] == 1.0 and slowdowns["y"]["1"] == pytest.approx(1.1)
    assert slowdowns["hopeless"]["1"] == 5.0
    assert times.medians() == {"x": {"1": 3.0}, "y": {"1": 2.9}, "hopeless": {"1": 5.0}}
    assert auto.least_worst_slowdown(times.medians()) == "y"
    assert auto.least_worst_slowdown(slowdowns) == "x"


def test_time_candidates_refuses_zero_rounds() -> None:
    with pytest.raises(ValueError, match="Expected rounds >= 1. Received: rounds=0"):
        auto.time_candidates({"a": lambda: chain(0)}, (256,), "CPUExecutionProvider", rounds=0)


def test_still_competitive_keeps_a_candidate_that_is_close_at_any_batch() -> None:
    times = {"fast_small": {1: [1.0, 1.2], 64: [50.0]}, "fast_large": {1: [4.0], 64: [10.0, 11.0]},
             "close_at_1": {1: [3.2], 64: [40.0]}, "hopeless": {1: [3.4], 64: [35.0]}}
    # best: 1.1 ms at batch 1 (x3 = 3.3), 10.5 ms at 64 (x3 = 31.5): "hopeless" is over both
    assert auto.still_competitive(times, list(times)) == ["fast_small", "fast_large", "close_at_1"]


def test_least_worst_slowdown_prefers_the_candidate_never_far_from_the_best() -> None:
    timings = {"local": {"1": 1.0, "64": 20.0}, "chunked": {"1": 1.5, "64": 10.0},
               "adaptive": {"1": 1.05, "64": 10.5}}
    assert auto.least_worst_slowdown(timings) == "adaptive"


def test_a_tie_within_the_margin_goes_to_the_strategy_that_combines_the_others() -> None:
    # local is the least worst (exactly the best at both sizes); adaptive, which runs local's
    # and chunked's graphs, times 8 % slower at batch 1: a tie, so adaptive
    timings = {"local": {"1": 1.0, "64": 10.0}, "chunked": {"1": 3.0, "64": 10.4},
               "adaptive": {"1": 1.08, "64": 10.2}}
    assert auto.least_worst_slowdown(timings) == "adaptive"
    # 15 % slower is beyond the margin: the measured best stands
    timings["adaptive"]["1"] = 1.15
    assert auto.least_worst_slowdown(timings) == "local"
    # a strategy much faster than both is chosen whatever it combines
    timings["dense"] = {"1": 0.5, "64": 5.0}
    assert auto.least_worst_slowdown(timings) == "dense"


def test_a_candidate_is_not_timed_where_its_intermediates_exceed_the_memory_budget(monkeypatch) -> None:
    from benchmarks.workloads import all_workloads
    from export.lowerings.base import LoweringContext
    from export.lowerings.sparse import sparse_activation_bytes

    # DeepFace L4 (63x63x16 in, 9x9, 16 filters): sparse's products are (N, 3025, 1296, 16) floats,
    # 17.1 GB with the taps at batch 64 (a full `lc2d bench` was killed for memory timing them), 0.27 GB at 1
    l4 = all_workloads()["L4"].build(1).layers[-1].geometry
    assert sparse_activation_bytes(l4, 64) == 4 * 64 * 3025 * 1296 * 17
    assert auto.too_large_at("sparse", l4, (1, 64)) == {64}
    assert auto.too_large_at("local", l4, (1, 64)) == set()  # its intermediates are bounded otherwise
    # the same rule end to end, on a small layer with the budget between its batch-1 and batch-8 needs
    layer = all_workloads()["tiny"].build(1).layers[-1]
    monkeypatch.setattr(auto, "MEMORY_BUDGET_BYTES", sparse_activation_bytes(layer.geometry, 4))
    choice = auto.choose_strategy(layer, LoweringContext(), "CPUExecutionProvider", batches=(1, 8), rounds=1)
    assert set(choice.timings_ms["sparse"]) == {"1"} and set(choice.timings_ms["local"]) == {"1", "8"}
    assert choice.strategy != "sparse"  # untimed at 8 counts as infinitely slow there


def test_least_worst_slowdown_counts_an_untimed_batch_as_infinitely_slow() -> None:
    timings = {"local": {"1": 1.0, "64": 20.0}, "sparse": {"1": 0.5}}
    assert auto.least_worst_slowdown(timings) == "local"
    assert auto.still_competitive({"a": {1: [1.0], 64: [10.0]}, "b": {1: [0.9]}}, ["a", "b"]) == ["a", "b"]
