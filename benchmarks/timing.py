"""Timing one callable: warm-up runs, then medians of at least ``min_runs`` within a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """Wall times of one measurement (milliseconds)."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimingPolicy:
    """How long to measure: ``warmup`` untimed runs, then at least ``min_runs`` and until
    ``budget_s`` seconds have passed, never more than ``max_runs``."""

    budget_s: float = 1.0
    min_runs: int = 5
    max_runs: int = 50
    warmup: int = 2


def measure(fn: Callable[[], object], policy: TimingPolicy) -> Timing:
    """Time ``fn`` under ``policy``; the first warm-up also absorbs tracing and allocation.

    Further warm-ups are dropped once one warm-up has taken the whole budget (slow methods).
    """
    for _ in range(policy.warmup):
        tick = time.perf_counter()
        fn()
        if time.perf_counter() - tick > policy.budget_s:
            break
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < policy.max_runs and (
            len(times) < policy.min_runs or time.perf_counter() - started < policy.budget_s):
        tick = time.perf_counter()
        fn()
        times.append((time.perf_counter() - tick) * 1e3)
    return Timing(statistics.median(times), min(times), max(times), len(times))
