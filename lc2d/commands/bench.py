"""`lc2d bench`: the LocallyConnected2D benchmark suite; rewrites docs/performance.md (see there)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError

HELP = ("Benchmark tf_keras, our Keras layer and every ONNX lowering against this machine's floor; "
        "write a Markdown table, JSON and a chart.")
REPO_ROOT = Path(__file__).resolve().parents[2]
# the same as benchmarks.bench_layers.FAMILIES (tests/bench checks), kept here for a light --help
FAMILIES = ("tf_keras", "keras", "keras-jax", "keras-torch", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a ~1-minute subset: reference layer 1 and DeepFace L6, implementation 1 "
                             "of tf_keras and Keras with every ONNX lowering, short timings, smaller "
                             "floor measurements")
    parser.add_argument("--batch", type=int, nargs="+", default=None, metavar="N",
                        help="batch sizes; default: 1 64")
    parser.add_argument("--shapes", nargs="+", default=None, metavar="NAME",
                        help="workloads: ref1 ref2 L4 L5 L6 seed_example deepface (and tiny); "
                             "default: all but tiny (--quick: ref1 L6)")
    parser.add_argument("--methods", nargs="+", default=None, choices=FAMILIES, metavar="FAMILY",
                        help="method families to run: tf_keras keras keras-jax keras-torch onnx "
                             "(keras-jax and keras-torch: our layer under Keras's JAX and PyTorch "
                             "backends, each in a process of its own); default: all")
    parser.add_argument("--out", type=Path, default=Path("docs"),
                        help="folder of performance.md; JSON and chart go to OUT/perf/; default: docs")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads; default: the number of cores")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds of timed runs per measurement (at least 5 runs); "
                             "default: 1.0 (--quick: 0.2)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds in which the ONNX files of one workload and batch are "
                             "timed side by side (each gets --budget-s over all rounds); default: 3 "
                             "(--quick: 2)")
    parser.add_argument("--tf-keras-sparse-max-indices", type=int, default=None,
                        help="skip tf_keras implementation 3 above this many sparse indices (its index "
                             "build is pure Python); default: 2,000,000 (--quick: 200,000)")
    parser.add_argument("--floors", type=float, nargs=2, default=None, metavar=("GFLOPS", "GBS"),
                        help="use this matmul rate (GFLOP/s) and bandwidth (GB/s) instead of measuring "
                             "them, e.g. to compare runs against the same floors")
    parser.add_argument("--no-docs", action="store_true",
                        help="print the table and write the JSON and chart, leave performance.md alone")


def load_suite() -> Any:
    """``benchmarks.bench_layers``, which lives in the source checkout next to ``lc2d/``."""
    if not (REPO_ROOT / "benchmarks" / "bench_layers.py").is_file():
        raise UsageError(f"lc2d bench runs from a source checkout. Expected {REPO_ROOT / 'benchmarks'} "
                         "with bench_layers.py. Received: an installation without it")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return importlib.import_module("benchmarks.bench_layers")


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name}: expected a positive number. Received: {value}")


def build_config(args: argparse.Namespace, suite: Any) -> Any:
    """The suite's configuration from the arguments; bad values raise UsageError."""
    from benchmarks.timing import TimingPolicy
    from benchmarks.workloads import QUICK_WORKLOADS, all_workloads

    known = all_workloads()
    shapes = tuple(args.shapes or (QUICK_WORKLOADS if args.quick else suite.DEFAULT_WORKLOADS))
    unknown = [s for s in shapes if s not in known]
    if unknown:
        raise UsageError(f"--shapes: expected names from {sorted(known)}. Received: {unknown}")
    batches = tuple(args.batch or (1, 64))
    if any(b <= 0 for b in batches):
        raise UsageError(f"--batch: expected positive integers. Received: {list(batches)}")
    checks = [("--floors", v) for v in args.floors or ()] + [
        ("--threads", args.threads), ("--budget-s", args.budget_s), ("--rounds", args.rounds),
        ("--tf-keras-sparse-max-indices", args.tf_keras_sparse_max_indices)]
    for name, value in checks:
        _positive(name, value)
    policy = TimingPolicy(budget_s=args.budget_s or (0.2 if args.quick else 1.0),
                          warmup=1 if args.quick else 2)
    kwargs: dict[str, Any] = {"workloads": shapes, "batches": tuple(dict.fromkeys(batches)), "policy": policy,
                              "families": tuple(args.methods or FAMILIES),
                              "tf_keras_sparse_max_indices": args.tf_keras_sparse_max_indices
                              or (200_000 if args.quick else suite.TF_KERAS_SPARSE_MAX_INDICES)}
    if args.threads:
        kwargs["threads"] = args.threads
    kwargs["rounds"] = args.rounds or (2 if args.quick else 3)
    if args.quick:
        kwargs["implementations"] = (1,)
    return suite.SuiteConfig(**kwargs)


def run(args: argparse.Namespace) -> int:
    suite = load_suite()
    config = build_config(args, suite)
    from benchmarks.report import markdown, write_chart, write_json, write_reports

    floors = None
    if args.floors:
        from benchmarks.floors import MachineFloors

        floors = MachineFloors(args.floors[0], args.floors[1], matmul_n=0, copy_mib=0)
    result = suite.run_suite(config, floors=floors, quick=args.quick)
    print()
    print(markdown(result, chart=None))
    if args.no_docs:
        write_json(result, args.out / "perf" / "bench.json")
        write_chart(result, args.out / "perf" / "chart.png")
        print(f"\nwrote {args.out / 'perf'}/bench.json and chart.png")
        return 0
    paths = write_reports(result, args.out)
    print(f"\nwrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    return 0
