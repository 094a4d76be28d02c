"""`lc2d bench`: the LocallyConnected2D benchmark suite; rewrites docs/performance.md (see there)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from lc2d.errors import UsageError

HELP = ("Benchmark tf_keras, our Keras layer and every ONNX lowering against this machine's floor; "
        "write a Markdown table, JSON and a chart.")
# the same as benchmarks.bench_layers.FAMILIES (tests/bench checks), kept here for a light --help
FAMILIES = ("tf_keras", "keras", "keras-jax", "keras-torch", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="a short subset (a few minutes on 2 quiet cores, far longer on a loaded "
                             "machine; times in docs/performance.md): reference layer 1 and DeepFace "
                             "L6, implementation 1 of tf_keras and Keras with every ONNX lowering, short "
                             "timings, 3 rounds, smaller floor measurements")
    parser.add_argument("--check", action="store_true",
                        help="re-measure the claims the README quotes (OUT/perf/claims.json, else the last "
                             "full run's OUT/perf/bench.json) side by side: auto and the fastest tf_keras "
                             "implementation in interleaved rounds, every claimed shape but the whole "
                             "DeepFace (a few minutes); print which hold now, write OUT/perf/check.json")
    parser.add_argument("--write-claims", action="store_true",
                        help="with --check: write this run's conservative figures (smallest per-round "
                             "speed-up, largest per-round floor ratio) to OUT/perf/claims.json")
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
                             "timed side by side (each gets --budget-s over all rounds); default: 7 "
                             "(--quick: 3)")
    parser.add_argument("--tf-keras-sparse-max-indices", type=int, default=None,
                        help="skip tf_keras implementation 3 above this many sparse indices (its index "
                             "build is pure Python); default: 2,000,000 (--quick: 200,000)")
    parser.add_argument("--floors", type=float, nargs=2, default=None, metavar=("GFLOPS", "GBS"),
                        help="use this matmul rate (GFLOP/s) and bandwidth (GB/s) instead of measuring "
                             "them, e.g. to compare runs against the same floors")
    parser.add_argument("--no-docs", action="store_true",
                        help="print the table and write the JSON and chart, leave performance.md alone")


def load_suite() -> Any:
    """``benchmarks.bench_layers`` (the ``benchmarks`` package is installed with ``lc2d``)."""
    try:
        return importlib.import_module("benchmarks.bench_layers")
    except ModuleNotFoundError as err:
        if err.name not in ("benchmarks", "benchmarks.bench_layers"):
            raise
        raise UsageError("expected the benchmarks package installed with lc2d-serve (pip install "
                         "'.[dev]'). Received: an installation without it") from err


def _positive(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise UsageError(f"{name}: expected a positive number. Received: {value}")


def check_claims(args: argparse.Namespace) -> dict[str, Any]:
    """The claims ``--check`` re-measures; UsageError when there are none."""
    from benchmarks.claims import load_claims

    if args.write_claims and not args.check:
        raise UsageError("--write-claims: expected together with --check. Received: --write-claims alone")
    try:
        return load_claims(args.out / "perf" / "claims.json", args.out / "perf" / "bench.json")
    except ValueError as err:
        raise UsageError(f"--check: {err}") from None


def build_config(args: argparse.Namespace, suite: Any, claims: dict[str, Any] | None = None) -> Any:
    """The suite's configuration from the arguments; bad values raise UsageError.

    With ``claims`` (``--check``): the claimed workloads and batches (``--shapes`` and
    ``--batch`` narrow them), tf_keras and only the ``auto`` export, 0.5 s per measurement.
    """
    from benchmarks.claims import CHECK_EXCLUDED
    from benchmarks.timing import TimingPolicy
    from benchmarks.workloads import QUICK_WORKLOADS, all_workloads

    known = all_workloads()
    if claims is not None:
        claimed = [c for c in claims["claims"] if c["workload"] not in CHECK_EXCLUDED]
        args.shapes = args.shapes or list(dict.fromkeys(c["workload"] for c in claimed))
        args.batch = args.batch or sorted({c["batch"] for c in claimed})
        args.methods = args.methods or ["tf_keras", "onnx"]
        args.budget_s = args.budget_s or 0.5
        args.tf_keras_sparse_max_indices = args.tf_keras_sparse_max_indices or 200_000
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
    kwargs["rounds"] = args.rounds or (3 if args.quick else 7)
    kwargs["process_per_workload"] = len(shapes) > 1  # memory handed back between workloads
    if args.quick:
        kwargs["implementations"] = (1,)
    if claims is not None:
        kwargs["strategies"] = ("auto",)
    return suite.SuiteConfig(**kwargs)


def run(args: argparse.Namespace) -> int:
    suite = load_suite()
    claims = check_claims(args) if args.check or args.write_claims else None
    config = build_config(args, suite, claims)
    from benchmarks.report import markdown, write_chart, write_json, write_reports

    floors = None
    if args.floors:
        from benchmarks.floors import MachineFloors

        floors = MachineFloors(args.floors[0], args.floors[1], matmul_n=0, copy_mib=0)
    result = suite.run_suite(config, floors=floors, quick=args.quick or claims is not None)
    print()
    print(markdown(result, chart=None))
    if claims is not None:
        return report_check(args, claims, result)
    if args.no_docs:
        write_json(result, args.out / "perf" / "bench.json")
        write_chart(result, args.out / "perf" / "chart.png")
        print(f"\nwrote {args.out / 'perf'}/bench.json and chart.png")
        return 0
    paths = write_reports(result, args.out)
    print(f"\nwrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    return 0


def report_check(args: argparse.Namespace, claims: dict[str, Any], result: dict[str, Any]) -> int:
    """Prints and writes ``--check``'s verdicts; with ``--write-claims``, this run's claims."""
    import json

    from benchmarks.claims import check_markdown, claims_from_summary, verdicts

    checked = verdicts(claims, result["summary"])
    print()
    print(check_markdown(claims, checked))
    held = [c for c in checked if c["speedup_holds"] is not None]
    print(f"\n{sum(bool(c['speedup_holds']) for c in held)} of {len(held)} measured speed-up claims hold now")
    (args.out / "perf").mkdir(parents=True, exist_ok=True)
    (args.out / "perf" / "check.json").write_text(
        json.dumps({"claims": claims, "verdicts": checked, "run": result}, indent=1, default=float) + "\n")
    if args.write_claims:
        source = f"lc2d bench --check of {result['generated_at']}"
        fresh = claims_from_summary(result["summary"], source)
        (args.out / "perf" / "claims.json").write_text(json.dumps(fresh, indent=1) + "\n")
        print(f"wrote {args.out / 'perf' / 'claims.json'}")
    print(f"wrote {args.out / 'perf' / 'check.json'}")
    return 0
