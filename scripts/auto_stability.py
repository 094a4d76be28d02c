"""Does ``auto`` choose right? Repeated exports per LocallyConnected2D shape, each pick checked by timing.

For each layer shape of the benchmark (``benchmarks.workloads``; default ref1 ref2 L4 L5 L6) it
builds the one-layer model as ``lc2d bench`` does (seeded weights, random biases), exports
``auto`` ``--repeats`` times (each export times its candidates afresh) and every float strategy
once, then times every strategy's file side by side in one fresh process, in interleaved rounds
(:func:`benchmarks.bench_layers.time_onnx_files`), at each batch size; a file whose intermediates
need more than a quarter of the machine's memory is not timed there, as in ``lc2d bench``
(:func:`benchmarks.bench_layers.onnx_memory_skip`). A pick holds at a batch size when its
strategy's time is within ``--tolerance`` (10 %) of the fastest strategy's, as the median over
rounds of the ratio within each round (:func:`benchmarks.timing.paired_ratio`), the rounds of
``--processes`` (2) timing processes pooled, the order of the files reversed in every other one:
the same graph loaded in another process can time a few per cent apart for that process's life
(DeepFace L6 at batch 1: ``adaptive`` over ``local`` 1.16 in one process, 1.00 in the next). Prints a table
and writes ``docs/perf/auto_stability.json``.

Usage:
    .venv/bin/python scripts/auto_stability.py                       # ~10 minutes on 2 cores
    .venv/bin/python scripts/auto_stability.py --shapes L6 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def check_shape(name: str, repeats: int, batches: tuple[int, ...], rounds: int, processes: int,
                tolerance: float, threads: int, workdir: Path) -> dict[str, Any]:
    """Picks of ``repeats`` auto exports of one shape and how each compares with the fastest."""
    from benchmarks.bench_layers import onnx_memory_skip, randomize, time_onnx_files
    from benchmarks.timing import Timing, TimingPolicy, paired_ratio
    from benchmarks.workloads import all_workloads
    from export import ExportOptions, to_onnx
    from export.lowerings import auto_candidates
    from export.lowerings.base import LoweringContext

    model = all_workloads()[name].build(1)
    randomize(model, 20261125)
    layer = model.layers[-1]
    strategies = auto_candidates(layer, LoweringContext())
    picks, export_s, export_timings = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        report = to_onnx(model, workdir / f"{name}-auto.onnx", ExportOptions(policy="auto", check=False))
        export_s.append(round(time.perf_counter() - started, 2))
        picks.append(report.layers[0]["lowering"])
        export_timings.append(report.layers[0].get("timings_ms"))
    for strategy in strategies:
        to_onnx(model, workdir / f"{name}-{strategy}.onnx", ExportOptions(policy=strategy, check=False))
    rng = np.random.default_rng(0)
    timings: dict[str, dict[str, float]] = {s: {} for s in strategies}
    rounds_ms: dict[str, dict[str, list[float]]] = {s: {} for s in strategies}
    skipped: dict[str, dict[str, str]] = {}
    for batch in batches:
        x = rng.standard_normal((batch, *model.input_shape[1:])).astype(np.float32)
        timed = []
        for strategy in strategies:
            if reason := onnx_memory_skip(model, strategy, batch):
                skipped.setdefault(strategy, {})[str(batch)] = reason
            else:
                timed.append(strategy)
        medians: dict[str, list[float]] = {s: [] for s in timed}
        for child in range(processes):  # the order reversed in every other process
            order = timed if child % 2 == 0 else timed[::-1]
            results = time_onnx_files([workdir / f"{name}-{s}.onnx" for s in order], x, threads,
                                      TimingPolicy(budget_s=1.0), rounds)
            for strategy, result in zip(order, results, strict=True):
                if not isinstance(result, str):
                    timing: Timing = result[1]
                    medians[strategy].append(timing.median_ms)
                    rounds_ms[strategy].setdefault(str(batch), []).extend(timing.round_medians_ms)
        for strategy, per_process in medians.items():
            if per_process:
                timings[strategy][str(batch)] = float(np.median(per_process))
    ratios = {}  # None: the pick was not timed at that batch size
    for pick in sorted(set(picks)):
        ratios[pick] = {b: paired_ratio(rounds_ms[pick].get(b, []),
                                        [r[b] for r in rounds_ms.values() if b in r])
                        for b in map(str, batches)}
    holds = {pick: all(r is not None and r <= 1 + tolerance for r in per_batch.values())
             for pick, per_batch in ratios.items()}
    for path in workdir.glob(f"{name}-*.onnx"):
        path.unlink()
    return {"shape": name, "picks": picks, "pick_counts": dict(Counter(picks)), "export_s": export_s,
            "export_timings_ms": export_timings,
            "timings_ms": timings, "round_medians_ms": rounds_ms, "not_timed": skipped,
            "pick_over_fastest": ratios, "holds": holds,
            "all_hold": all(holds[p] for p in picks)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=["ref1", "ref2", "L4", "L5", "L6"])
    parser.add_argument("--repeats", type=int, default=5, help="auto exports per shape (default 5)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the check timing (7)")
    parser.add_argument("--processes", type=int, default=2,
                        help="timing processes per shape and batch, the order of the files reversed in "
                             "every other one; their rounds are pooled (2)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="allowed slowdown of a pick (0.10)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json-out", type=Path, default=REPO_ROOT / "docs" / "perf" / "auto_stability.json")
    args = parser.parse_args(argv)
    if min(args.repeats, args.rounds, args.processes) < 1:
        parser.error(f"--repeats, --rounds and --processes must be at least 1. Received: {args.repeats}, "
                     f"{args.rounds}, {args.processes}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    started, load_start = time.perf_counter(), os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="lc2d-auto-") as folder:
        for name in args.shapes:
            result = check_shape(name, args.repeats, tuple(args.batch), args.rounds, args.processes,
                                 args.tolerance, args.threads, Path(folder))
            results.append(result)
            ratio_text = "; ".join(f"{p}: " + ", ".join(f"b{b} {'—' if r is None else f'{r:.2f}×'}"
                                                        for b, r in rs.items())
                                   for p, rs in result["pick_over_fastest"].items())
            print(f"{name:5} picks {result['pick_counts']}  pick/fastest {ratio_text}  "
                  f"{'holds' if result['all_hold'] else 'DOES NOT HOLD'}", flush=True)
    report = {"generated_at": time.strftime("%Y-%m-%d %H:%M %Z"),
              "seconds": round(time.perf_counter() - started),
              "load_average_start": list(load_start), "load_average_end": list(os.getloadavg()),
              "settings": {"repeats": args.repeats, "batches": args.batch, "rounds": args.rounds,
                           "processes": args.processes,
                           "tolerance": args.tolerance, "threads": args.threads},
              "shapes": results, "all_hold": all(r["all_hold"] for r in results)}
    from benchmarks.report import write_json

    write_json(report, args.json_out)
    print(f"all picks within {args.tolerance:.0%} of the fastest: {report['all_hold']}; "
          f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
