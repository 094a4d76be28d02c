"""This machine's floors: float32 matrix-product rate and memory bandwidth, and the floor of a workload.

The floor of a workload is the time it could not beat on this machine:
``max(FLOPs / matmul rate, bytes / bandwidth)``. The matmul rate is measured with ONNX Runtime
(the engine we serve with, same thread count as the benchmarks) rather than NumPy's BLAS, whose
kernel choice depends on ``OPENBLAS_CORETYPE``. Bandwidth counts read + write bytes of a large
copy, the best of a NumPy copy and an ONNX Runtime element-wise op (which uses every thread).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MATMUL_N = 2048
COPY_MIB = 256


@dataclass(frozen=True)
class MachineFloors:
    """Measured matmul rate (GFLOP/s) and memory bandwidth (GB/s, read + write)."""

    matmul_gflops: float
    bandwidth_gbs: float
    matmul_n: int = MATMUL_N
    copy_mib: int = COPY_MIB
    bandwidth_numpy_gbs: float | None = None
    bandwidth_ort_gbs: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def floor_ms(flops: float, nbytes: float, matmul_gflops: float, bandwidth_gbs: float) -> float:
    """``max(FLOPs / rate, bytes / bandwidth)`` in milliseconds."""
    if matmul_gflops <= 0 or bandwidth_gbs <= 0:
        raise ValueError(f"Expected positive rates. Received: matmul_gflops={matmul_gflops}, "
                         f"bandwidth_gbs={bandwidth_gbs}")
    return max(flops / (matmul_gflops * 1e9), nbytes / (bandwidth_gbs * 1e9)) * 1e3


def ort_session(model: Any, threads: int, stop_spinning: bool = False) -> Any:
    """An ORT CPU session with ``threads`` intra-op threads and every graph optimisation.

    ``stop_spinning``: idle threads stop busy-waiting when a run ends, so that several sessions
    in one process do not take the CPU from each other.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    source = model.SerializeToString() if hasattr(model, "SerializeToString") else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def _best_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median of ``runs`` timed calls after one warm-up (seconds)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _two_input_model(op: str, shapes: list[tuple[int, ...]]) -> Any:
    import onnx
    from onnx import helper

    names = ["a", "b"][: len(shapes)]
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s)) for n, s in zip(names, shapes,
                                                                                              strict=True)]
    output = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node(op, names, ["y"])], f"floor_{op.lower()}", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def measure_matmul_gflops(threads: int, n: int = MATMUL_N, runs: int = 7) -> float:
    """GFLOP/s of an ``n×n @ n×n`` float32 ORT MatMul (``2·n³`` FLOPs)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    session = ort_session(_two_input_model("MatMul", [(n, n), (n, n)]), threads)
    seconds = _best_seconds(lambda: session.run(None, {"a": a, "b": b}), runs)
    return 2.0 * n**3 / seconds / 1e9


def measure_numpy_copy_gbs(mib: int = COPY_MIB, runs: int = 5) -> float:
    """GB/s (read + write) of ``np.copyto`` between two touched ``mib`` MiB buffers."""
    src = np.random.default_rng(0).standard_normal(mib * 2**18).astype(np.float32)
    dst = np.empty_like(src)
    seconds = _best_seconds(lambda: np.copyto(dst, src), runs)
    return 2.0 * src.nbytes / seconds / 1e9


def measure_ort_stream_gbs(threads: int, mib: int = COPY_MIB, runs: int = 5) -> float:
    """GB/s (read + write) of an ORT ``Neg`` over ``mib`` MiB (reads the input, writes the output)."""
    x = np.random.default_rng(0).standard_normal(mib * 2**18).astype(np.float32)
    session = ort_session(_two_input_model("Neg", [x.shape]), threads)
    seconds = _best_seconds(lambda: session.run(None, {"a": x}), runs)
    return 2.0 * x.nbytes / seconds / 1e9


def measure_floors(threads: int, matmul_n: int = MATMUL_N, copy_mib: int = COPY_MIB) -> MachineFloors:
    """Measure this machine's matmul rate and bandwidth (a few seconds)."""
    numpy_gbs = measure_numpy_copy_gbs(copy_mib)
    ort_gbs = measure_ort_stream_gbs(threads, copy_mib)
    return MachineFloors(matmul_gflops=measure_matmul_gflops(threads, matmul_n),
                         bandwidth_gbs=max(numpy_gbs, ort_gbs), matmul_n=matmul_n, copy_mib=copy_mib,
                         bandwidth_numpy_gbs=numpy_gbs, bandwidth_ort_gbs=ort_gbs)
