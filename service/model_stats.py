"""Inference statistics of one model version, as ``GET /v2/models/{name}/stats`` reports them.

The layout is Triton's statistics extension (what ``tritonclient``'s
``get_inference_statistics`` reads): per version, counts and cumulative nanoseconds of
successful and failed requests, of queueing, and of the three compute phases (merging the
batch, the model run, splitting the outputs), plus the number of instances inferred and of
model runs. A request's queue and compute times come from the batcher
(:class:`~service.batching.BatchTiming`); a request counts the whole compute time of the batch
it ran in, as Triton does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from service.batching import BatchObserver, BatchTiming

_NS = 1e9


@dataclass
class Duration:
    """A count and the cumulative time of what it counts."""

    count: int = 0
    seconds: float = 0.0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.seconds += seconds * count

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": int(self.seconds * _NS)}


@dataclass
class InferenceStats:
    """Counters of one model version; also the batcher's observer, forwarding to the metrics.

    Attributes:
        forward: the metrics observer batch and queue events go on to.
    """

    forward: BatchObserver | None = None
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self, forward: BatchObserver | None) -> None:
        """Zeroes every counter (after the warmup) and sets where batch events go on to."""
        with self._lock:
            self.success, self.fail, self.queue = Duration(), Duration(), Duration()
            self.compute_input, self.compute_infer, self.compute_output = Duration(), Duration(), Duration()
            self.inference_count = self.execution_count = self.last_inference_ms = 0
            self.forward = forward

    # --- requests (the data plane) -----------------------------------------------------------------

    def request_done(self, seconds: float, ok: bool) -> None:
        """Records one request's outcome and its time from choosing this version to the answer."""
        with self._lock:
            (self.success if ok else self.fail).add(seconds)
            self.last_inference_ms = int(time.time() * 1000)

    # --- BatchObserver ---------------------------------------------------------------------------

    def batch_ran(self, size: int, requests: int, seconds: float) -> None:
        with self._lock:
            self.inference_count += size
            self.execution_count += 1
        if self.forward is not None:
            self.forward.batch_ran(size, requests, seconds)

    def queue_changed(self, depth: int) -> None:
        if self.forward is not None:
            self.forward.queue_changed(depth)

    def request_dropped(self, reason: str) -> None:
        if self.forward is not None:
            self.forward.request_dropped(reason)

    def batch_timed(self, timing: BatchTiming) -> None:
        requests = len(timing.queue_s)
        with self._lock:
            for wait in timing.queue_s:
                self.queue.add(wait)
            self.compute_input.add(timing.input_s, requests)
            self.compute_infer.add(timing.infer_s, requests)
            self.compute_output.add(timing.output_s, requests)
        if self.forward is not None:
            self.forward.batch_timed(timing)

    # --- report --------------------------------------------------------------------------------

    def to_json(self, name: str, version: str) -> dict[str, Any]:
        """One entry of ``model_stats`` in Triton's layout."""
        with self._lock:
            return {
                "name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.to_json(), "fail": self.fail.to_json(),
                    "queue": self.queue.to_json(), "compute_input": self.compute_input.to_json(),
                    "compute_infer": self.compute_infer.to_json(),
                    "compute_output": self.compute_output.to_json(),
                    "cache_hit": Duration().to_json(), "cache_miss": Duration().to_json()},
                "batch_stats": [],
            }
