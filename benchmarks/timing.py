"""Timing one callable: warm-up runs, then medians of at least ``min_runs`` within a time budget."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from export.auto import paired_ratio  # noqa: F401 - one implementation, used by the reports


@dataclass(frozen=True)
class Timing:
    """Wall times of one measurement (milliseconds)."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    round_medians_ms: tuple[float, ...] = ()  # when timed in interleaved rounds: each round's median

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, times_ms: list[float]) -> Timing:
        """The timing of these run times (milliseconds; at least one)."""
        if not times_ms:
            raise ValueError("Expected at least one run time. Received: none")
        return cls(statistics.median(times_ms), min(times_ms), max(times_ms), len(times_ms))


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
    return Timing.of(sample(fn, policy))


def sample(fn: Callable[[], object], policy: TimingPolicy) -> list[float]:
    """The run times (milliseconds) of ``fn`` under ``policy``, after its warm-ups."""
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
    return times


def round_policy(policy: TimingPolicy, rounds: int, first: bool) -> TimingPolicy:
    """The share of ``policy`` one of ``rounds`` interleaved rounds gets.

    Budget and run counts are divided (rounded up); the first round keeps the warm-ups, every
    later round has one, so each method's timed runs follow a run of its own.
    """
    if rounds < 1:
        raise ValueError(f"Expected rounds >= 1. Received: {rounds}")
    return TimingPolicy(budget_s=policy.budget_s / rounds, min_runs=-(-policy.min_runs // rounds),
                        max_runs=-(-policy.max_runs // rounds), warmup=policy.warmup if first else 1)

