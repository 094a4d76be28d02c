"""Benchmark of `lc2d score` (local engine) against a bare ONNX Runtime loop over the same file.

Both sides score the same ``.npy`` in the same batches with the same thread count, in the same
run, alternating, ``--repeats`` times; the table reports the median throughput of each and their
ratio (target: lc2d score >= 90 % of the bare loop). Wall-clock ratios are noisy on a shared
machine, so the ratio of rows per CPU second (``time.process_time``) is reported too. Wall times
exclude creating the session on both sides; ``lc2d score`` includes reading, contract
validation and the incremental ``.npy`` write, the bare loop reads a memory map and writes
into an array in memory.

``--memory-gb G`` adds the bounded-memory check: a ``G`` GB ``.npy`` is scored by ``lc2d score``
in a child process and its peak resident memory (``ru_maxrss``) is reported.

Usage:
    python benchmarks/bench_score.py --rows 200000 --batch-sizes 64,256,1024 \
        --memory-gb 2 --json-out docs/bench_score.json
    python benchmarks/bench_score.py --model artifacts/models/digits/1/model.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TARGET_RATIO = 0.90


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="an .onnx model; default: a digits-sized MLP written with onnx.helper "
                             "([8, 8, 1] -> 256 -> 10, softmax)")
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the input .npy (default 200000)")
    parser.add_argument("--batch-sizes", default="64,256,1024", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads, both sides (default 1: steadier on a "
                             "shared machine, and CPU time then measures the work)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each side (median)")
    parser.add_argument("--memory-gb", type=float, default=0.0,
                        help="also score an input of this many GB in a child process and report its "
                             "peak RSS (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where to write inputs (default: a temp dir)")
    parser.add_argument("--json-out", type=Path, default=REPO_ROOT / "docs" / "bench_score.json")
    return parser.parse_args(argv)


def write_mlp_model(path: Path, hidden: int = 256, classes: int = 10, seed: int = 0) -> Path:
    """A small MLP with the lc2d metadata, standing in for the digits model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from service.model_format import build_metadata

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.2, (64, hidden)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (hidden, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "bench_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, build_metadata(
        model_name="bench_mlp", input_name="input", input_shape=(8, 8, 1), output_names=["probabilities"]))
    onnx.save(model, str(path))
    return path


def write_input(path: Path, rows: int, instance_shape: tuple[int, ...], seed: int = 1) -> Path:
    """A random float32 ``.npy`` written in chunks (never whole in memory)."""
    from service.scoring.writer import NpyRowWriter

    rng = np.random.default_rng(seed)
    writer = NpyRowWriter(path, rows, instance_shape)
    chunk = 65_536
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        writer.write(start, rng.random((stop - start, *instance_shape), dtype=np.float32))
    writer.commit()
    return path


def bare_ort_loop(model: Path, data: Path, batch_size: int, threads: int | None) -> tuple[float, float]:
    """Rows per wall second and per CPU second of a plain session.run loop over a memory map
    (session creation excluded)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.load(data, mmap_mode="r")
    out: np.ndarray | None = None
    began, cpu_began = time.perf_counter(), time.process_time()
    for start in range(0, len(x), batch_size):
        y = session.run(None, {name: np.ascontiguousarray(x[start:start + batch_size])})[0]
        if out is None:
            out = np.empty((len(x), *y.shape[1:]), dtype=y.dtype)
        out[start:start + len(y)] = y
    return len(x) / (time.perf_counter() - began), len(x) / (time.process_time() - cpu_began)


def lc2d_score(model: Path, data: Path, output: Path, batch_size: int, threads: int | None
               ) -> tuple[float, float]:
    """Rows per wall second (the summary's scoring time) and per CPU second of ``lc2d score``'s
    local engine; the CPU time includes the model load and checks, which the wall time does not."""
    from service.scoring import ScoringJob, run_scoring_job

    job = ScoringJob(model, data, output, batch_size=batch_size, device="cpu", threads=threads)
    cpu_began = time.process_time()
    summary = run_scoring_job(job)
    return summary.throughput_rows_per_s, summary.count / (time.process_time() - cpu_began)


def compare(model: Path, data: Path, workdir: Path, batch_size: int, threads: int | None,
            repeats: int) -> dict[str, Any]:
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_ort_loop(model, data, batch_size, threads))
        ours.append(lc2d_score(model, data, workdir / "scores.npy", batch_size, threads))
    wall = [statistics.median(run[0] for run in side) for side in (bare, ours)]
    cpu = [statistics.median(run[1] for run in side) for side in (bare, ours)]
    return {"batch_size": batch_size, "bare_rows_per_s": wall[0], "lc2d_rows_per_s": wall[1],
            "ratio": wall[1] / wall[0], "bare_rows_per_cpu_s": cpu[0], "lc2d_rows_per_cpu_s": cpu[1],
            "cpu_ratio": cpu[1] / cpu[0], "bare_runs": bare, "lc2d_runs": ours}


def memory_check(model: Path, workdir: Path, gigabytes: float, batch_size: int = 1024) -> dict[str, Any]:
    """Scores a ``gigabytes`` GB input in a child ``lc2d score`` and returns its peak RSS."""
    rows = int(gigabytes * 1e9) // (64 * 4)
    data = write_input(workdir / "big.npy", rows, (8, 8, 1), seed=2)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lc2d", "score", str(model), str(data), "-o",
                    str(workdir / "big_scores.npy"), "--batch-size", str(batch_size), "--device", "cpu",
                    "--no-progress"], check=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - began
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    data.unlink()
    return {"input_bytes": rows * 64 * 4, "rows": rows, "batch_size": batch_size, "wall_s": wall,
            "peak_rss_mib": peak_kib / 1024, "peak_rss_note": "ru_maxrss of the lc2d score child; "
            f"earlier children peaked at {before / 1024:.0f} MiB (input writer not included: it ran "
            "in this process)"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        model = args.model or write_mlp_model(workdir / "bench_mlp.onnx")
        from service.runtime import load_model

        shape = tuple(int(d) for d in load_model(model, "cpu").contract.instance_shape if d is not None)
        data = write_input(workdir / "x.npy", args.rows, shape)
        rows = [compare(model, data, workdir, int(b), args.threads, args.repeats)
                for b in args.batch_sizes.split(",")]
        memory = memory_check(model, workdir, args.memory_gb) if args.memory_gb > 0 else None
    print(f"\n{args.rows:,} rows of {list(shape)}, model {model.name if args.model else 'bench_mlp'}, "
          f"threads {args.threads or 'ORT default'}, median of {args.repeats}\n")
    print("| batch | bare ORT rows/s | lc2d score rows/s | ratio | bare rows/CPU-s | lc2d rows/CPU-s "
          "| CPU ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['batch_size']} | {row['bare_rows_per_s']:,.0f} | {row['lc2d_rows_per_s']:,.0f} | "
              f"{row['ratio']:.2f} | {row['bare_rows_per_cpu_s']:,.0f} | {row['lc2d_rows_per_cpu_s']:,.0f} | "
              f"{row['cpu_ratio']:.2f} |")
    if memory is not None:
        print(f"\nbounded memory: {memory['input_bytes'] / 1e9:.2f} GB input ({memory['rows']:,} rows), "
              f"batch {memory['batch_size']}: peak RSS {memory['peak_rss_mib']:.0f} MiB, "
              f"{memory['wall_s']:.1f} s")
    report = {"command": " ".join(sys.argv), "load_average": list(os.getloadavg()),
              "rows": args.rows, "instance_shape": list(shape), "threads": args.threads,
              "repeats": args.repeats, "target_ratio": TARGET_RATIO,
              "meets_target": all(row["ratio"] >= TARGET_RATIO for row in rows), "results": rows,
              "memory": memory, "machine": {"python": platform.python_version(),
                                            "processor": platform.processor() or platform.machine()}}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
