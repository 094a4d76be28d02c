"""Times ONNX files side by side in a fresh process: ``python -m benchmarks.onnx_timer X.npy OUT A.onnx ...``.

Why a process of their own: in a long benchmark process the same ONNX file measured 6.3 ms after
one method and 9.3 ms after another (reference layer 1, batch 64), because what ran before
(allocator state, TensorFlow's threads) leaks into the timing. Why side by side: this machine's
speed drifts (up to 2× within minutes), so files timed one after the other minutes apart compare
the machine as much as the files; ``auto`` and the very lowering it chose once measured 37.9 and
23.7 ms in the same run. Here every file of one workload and batch is loaded in one child and
timed in ``--rounds`` interleaved rounds (the order rotating each round, each file warmed up by
a run of its own before its timed runs); a file's timing is over the runs of every round.

Sessions stop their threads spinning when a run ends (``session.force_spinning_stop``, as the
service does): otherwise one session's idle threads busy-wait while the next session runs. After
its share of a round, each session runs once more, untimed, with ONNX Runtime's arena shrinkage,
which returns its activation memory: without it every session keeps its peak, and DeepFace's
files at batch 64 together exceeded this machine's 24 GB (1.4 GB per session for ``local``).
A released session gets two warm-up runs in its next share, not one: a graph whose
LocallyConnected2D layers sit in If branches (``adaptive``, ``auto``) allocates its branches'
memory outside the main graph's plan and needs two runs to rebuild its arena; with one, the whole
DeepFace's ``adaptive`` file timed 1.21-1.24x ``chunked``'s at batch 64 and equal with two
(2026-12-02, 7 rounds: 678 against 548 ms, then 512 against 520 ms).

The child writes ``OUT/<i>.npy`` (the first output of file ``i`` on the batch, for the error
check) and ``OUT/timings.json``: one entry per file, ``{"timing": {...}}`` or ``{"error": "..."}``
when the file could not be loaded or run (the others are still timed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from benchmarks.floors import ort_session
from benchmarks.timing import Timing, TimingPolicy, round_policy, sample


def error_text(err: Exception) -> str:
    """One line for the parent's report: the exception's type and the start of its message."""
    return f"{type(err).__name__}: {str(err).strip()[:300]}"


def interleaved(calls: list[Callable[[], object] | None], policy: TimingPolicy, rounds: int,
                release: Sequence[Callable[[], object] | None] = (),
                between: Callable[[int, list[list[float]]], object] | None = None,
                ) -> tuple[list[Timing | str | None], list[list[float]]]:
    """Timings of ``calls`` measured in ``rounds`` rounds, one share of ``policy`` each per round.

    ``None`` entries (files that failed to load) give ``None``; a call that raises gives the
    error's text and is dropped from later rounds. ``release[i]``, when given, runs (untimed)
    after each share of call ``i``. ``between(r, medians)``, when given, runs before round
    ``r`` with the per-round medians so far (the stepwise mode reports them to its parent and
    waits there while the parent times tf_keras).

    Returns:
        Per call its timing over every round (or error or None), and per call the median of
        each round it ran in (ms).
    """
    times: list[list[float]] = [[] for _ in calls]
    per_round: list[list[float]] = [[] for _ in calls]
    results: list[Timing | str | None] = [None] * len(calls)
    live = [i for i, call in enumerate(calls) if call is not None]
    for r in range(rounds):
        if between is not None:
            between(r, per_round)
        share = round_policy(policy, rounds, first=r == 0)
        start = r % len(live) if live else 0
        for i in live[start:] + live[:start]:
            call = calls[i]
            assert call is not None
            try:
                if r > 0 and i < len(release) and release[i] is not None:
                    call()  # released after its last share: a second warm-up (see the module docstring)
                got = sample(call, share)
                times[i] += got
                per_round[i].append(statistics.median(got))
                if i < len(release) and (free := release[i]) is not None:
                    free()
            except Exception as err:  # noqa: BLE001 - recorded, the other files go on
                results[i] = error_text(err)
        live = [i for i in live if results[i] is None]
    timings = [Timing.of(times[i]) if i in live and times[i] else results[i] for i in range(len(calls))]
    return timings, per_round


def report_round(r: int, medians: list[list[float]]) -> None:
    """The stepwise mode's line after round ``r - 1``: each file's median then (None: not timed)."""
    print(json.dumps([m[-1] if len(m) == r else None for m in medians]), flush=True)


def stepwise(r: int, medians: list[list[float]]) -> None:
    """``between`` of the stepwise mode: report the last round, wait for the parent's 'go'."""
    if r > 0:
        report_round(r, medians)
    line = sys.stdin.readline().strip()
    if line != "go":
        raise SystemExit(f"onnx_timer --stepwise: expected 'go' from the parent. Received: {line!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("batch", type=Path, help=".npy input batch")
    parser.add_argument("out", type=Path, help="folder for <i>.npy and timings.json")
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--policy", required=True, help="TimingPolicy fields as JSON")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stepwise", action="store_true",
                        help="wait for a line 'go' on stdin before each round and print each round's "
                             "medians as a JSON line after it, so the parent times its own methods in "
                             "between (tf_keras interleaved with the ONNX files)")
    args = parser.parse_args(argv)
    x = np.load(args.batch)
    entries: list[dict[str, Any]] = []
    calls: list[Callable[[], object] | None] = []
    releases: list[Callable[[], object] | None] = []
    shrink = onnxruntime.RunOptions()
    shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    for i, path in enumerate(args.models):
        try:
            session = ort_session(str(path), args.threads, stop_spinning=True)
            feed = {session.get_inputs()[0].name: x}
            np.save(args.out / f"{i}.npy", session.run(None, feed, shrink)[0])
        except Exception as err:  # noqa: BLE001 - one broken file must not stop the others
            entries.append({"error": error_text(err)})
            calls.append(None)
            releases.append(None)
            continue
        entries.append({})
        calls.append(partial(session.run, None, feed))
        releases.append(partial(session.run, None, feed, shrink))
    timings, medians = interleaved(calls, TimingPolicy(**json.loads(args.policy)), args.rounds, releases,
                                   stepwise if args.stepwise else None)
    if args.stepwise:
        report_round(args.rounds, medians)
    write_timings(args.out, entries, timings, medians)
    return 0


def write_timings(out: Path, entries: list[dict[str, Any]], timings: Sequence[Timing | str | None],
                  medians: Sequence[list[float]]) -> None:
    """``out/timings.json``: per file ``{"timing": {...}}`` (with its per-round medians) or
    ``{"error": "..."}`` (``entries`` already holds the errors of files that could not be loaded)."""
    for entry, timing, rounds in zip(entries, timings, medians, strict=True):
        if isinstance(timing, Timing):
            entry["timing"] = {**timing.to_dict(), "round_medians_ms": rounds}
        elif timing is not None:
            entry["error"] = timing
    (out / "timings.json").write_text(json.dumps(entries))


if __name__ == "__main__":
    sys.exit(main())
