"""Where a lowering's time goes, op by op, against the floor: ``python scripts/profile_lowerings.py``.

For each layer shape of the benchmark (``benchmarks.workloads``; default ref1 ref2 L4 L5 L6) at
one batch size (default 64), it builds the one-layer model as ``lc2d bench`` does (seeded
weights), exports it with one strategy (default ``adaptive``, what ``auto`` picks on every shape),
and runs it under ONNX Runtime's profiler (``--threads`` intra-op threads, warm-up runs, then
``--runs`` profiled runs). Kernel time is summed per op type, nodes inside Scan and If bodies
included, and set against the floor of ``lc2d bench`` (``max(FLOPs / matmul rate, bytes /
bandwidth)``, the rates measured here first or given with ``--floors``): the run against the
floor, the MatMul time against FLOPs / matmul rate (the rate the products reach), the rest (the
gathers, transposes and adds that the products need around them) against the floor. For
LocallyConnected2D shapes it also times the products *alone*: one batched MatMul of each
location's ``(F, P)`` kernel by its ``(P, N)`` patches, already laid out (no gather, no
transpose; timed on a slice of about 64 MB of patches and scaled to every location): the
fastest any lowering built from standard ONNX ops could compute them on this machine.

Prints a table and writes ``docs/perf/profile_lowerings.json``.

Usage:
    .venv/bin/python scripts/profile_lowerings.py                      # about 2 minutes on 2 cores
    .venv/bin/python scripts/profile_lowerings.py --shapes ref1 --strategy chunked --batch 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

WARMUP_RUNS = 3
CONTROL_FLOW = ("If", "Scan", "Loop")  # their time holds their bodies' nodes, which are counted alone
PRODUCTS_SLICE_BYTES = 64 << 20  # patches per timed slice of the products alone


def products_alone_ms(geo: Any, batch: int, threads: int, runs: int) -> float:
    """Milliseconds for every location's ``(F, P) x (P, N)`` product in one batched MatMul, the
    operands laid out in advance (timed on a slice of the locations, scaled to all of them)."""
    import onnx
    from onnx import helper, numpy_helper

    from benchmarks.floors import ort_session

    chunk = max(1, min(geo.locations, PRODUCTS_SLICE_BYTES // (geo.patch_size * batch * 4)))
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((chunk, geo.filters, geo.patch_size)).astype(np.float32)
    patches = rng.standard_normal((chunk, geo.patch_size, batch)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["k", "p"], ["y"])], "products",
        [helper.make_tensor_value_info("p", onnx.TensorProto.FLOAT, list(patches.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(kernel, "k")])
    session = ort_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), threads)
    for _ in range(WARMUP_RUNS):
        session.run(None, {"p": patches})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"p": patches})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times) * geo.locations / chunk


def profile_file(path: Path, x: np.ndarray, threads: int, runs: int, workdir: Path) -> dict[str, Any]:
    """Median run time and mean kernel time per op type (ms per run) of ``runs`` profiled runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3
    options.enable_profiling = True
    options.profile_file_prefix = str(workdir / path.stem)
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x}
    for _ in range(WARMUP_RUNS + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    if len(model_runs) < WARMUP_RUNS + runs:
        raise RuntimeError(f"Expected {WARMUP_RUNS + runs} model_run events in the profile. "
                           f"Received: {len(model_runs)}")
    timed = model_runs[WARMUP_RUNS:]
    start = timed[0]["ts"]
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / runs
    return {"run_ms": statistics.median(e["dur"] / 1e3 for e in timed),
            "ops_ms": dict(sorted(per_op.items(), key=lambda kv: -kv[1]))}


def profile_shape(name: str, strategy: str, batch: int, threads: int, runs: int, matmul_gflops: float,
                  bandwidth_gbs: float, workdir: Path) -> dict[str, Any]:
    from benchmarks.bench_layers import randomize
    from benchmarks.floors import floor_ms
    from benchmarks.workloads import all_workloads, model_cost
    from export import ExportOptions, to_onnx

    model = all_workloads()[name].build(1)
    randomize(model, 20261125)
    path = workdir / f"{name}-{strategy}.onnx"
    report = to_onnx(model, path, ExportOptions(policy=strategy, check=False))
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape[1:])).astype(np.float32)
    cost = model_cost(model, batch)
    profile = profile_file(path, x, threads, runs, workdir)
    matmul_ms = sum(ms for op, ms in profile["ops_ms"].items() if "MatMul" in op)
    other_ms = sum(ms for op, ms in profile["ops_ms"].items()
                   if "MatMul" not in op and op not in CONTROL_FLOW)
    floor = floor_ms(cost.flops, cost.nbytes, matmul_gflops, bandwidth_gbs)
    shape = all_workloads()[name].shape
    alone = products_alone_ms(shape.geometry(), batch, threads, runs) if shape else None
    return {"shape": name, "title": all_workloads()[name].title, "strategy": strategy,
            "lowerings": [layer["lowering"] for layer in report.layers], "batch": batch,
            "flops": cost.flops, "bytes": cost.nbytes, "floor_ms": floor,
            "flops_floor_ms": cost.flops / matmul_gflops / 1e6,
            "bytes_floor_ms": cost.nbytes / bandwidth_gbs / 1e6,
            **profile, "run_over_floor": profile["run_ms"] / floor,
            "matmul_ms": matmul_ms, "matmul_gflops": cost.flops / matmul_ms / 1e6 if matmul_ms else None,
            "other_ms": other_ms, "products_alone_ms": alone,
            "products_alone_over_floor": alone / floor if alone else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from benchmarks.workloads import all_workloads

    parser.add_argument("--shapes", nargs="+", default=["ref1", "ref2", "L4", "L5", "L6"],
                        choices=sorted(all_workloads()), metavar="NAME",
                        help="workloads of lc2d bench (default: the five layer shapes)")
    parser.add_argument("--strategy", default="adaptive", help="lowering to profile (default adaptive)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--runs", type=int, default=10, help="profiled runs after 3 warm-ups (10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--floors", type=float, nargs=2, default=None, metavar=("GFLOPS", "GBS"),
                        help="matmul rate and bandwidth instead of measuring them")
    parser.add_argument("--json-out", type=Path,
                        default=REPO_ROOT / "docs" / "perf" / "profile_lowerings.json")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.batch < 1:
        parser.error(f"--runs and --batch must be at least 1. "
                     f"Received: --runs {args.runs} --batch {args.batch}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started, load_start = time.perf_counter(), os.getloadavg()
    if args.floors:
        gflops, gbs = args.floors
    else:
        from benchmarks.floors import measure_floors

        measured = measure_floors(args.threads)
        gflops, gbs = measured.matmul_gflops, measured.bandwidth_gbs
    print(f"floors: {gflops:.0f} GFLOP/s, {gbs:.1f} GB/s; batch {args.batch}, {args.strategy}, "
          f"{args.threads} threads", flush=True)
    print("| shape | run ms | floor ms (FLOPs, bytes) | run / floor | MatMul ms (GFLOP/s) | products alone "
          "ms (/ floor) | other ops ms: each |", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="lc2d-profile-") as folder:
        for name in args.shapes:
            r = profile_shape(name, args.strategy, args.batch, args.threads, args.runs, gflops, gbs,
                              Path(folder))
            results.append(r)
            others = ", ".join(f"{op} {ms:.2f}" for op, ms in r["ops_ms"].items()
                               if "MatMul" not in op and op not in CONTROL_FLOW)
            rate = f"{r['matmul_gflops']:.0f}" if r["matmul_gflops"] else "—"
            alone = (f"{r['products_alone_ms']:.2f} ({r['products_alone_over_floor']:.2f}×)"
                     if r["products_alone_ms"] else "—")
            print(f"| {name} | {r['run_ms']:.2f} | {r['floor_ms']:.2f} ({r['flops_floor_ms']:.2f}, "
                  f"{r['bytes_floor_ms']:.2f}) | {r['run_over_floor']:.2f}× | "
                  f"{r['matmul_ms']:.2f} ({rate}) | {alone} | {r['other_ms']:.2f}: {others} |", flush=True)
    report = {"generated_at": time.strftime("%Y-%m-%d %H:%M %Z"),
              "seconds": round(time.perf_counter() - started),
              "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
              "floors": {"matmul_gflops": gflops, "bandwidth_gbs": gbs, "measured": not args.floors},
              "settings": {"strategy": args.strategy, "batch": args.batch, "runs": args.runs,
                           "threads": args.threads},
              "shapes": results}
    from benchmarks.report import write_json

    write_json(report, args.json_out)
    print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
