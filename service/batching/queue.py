"""The batching queue: requests wait here, are merged into one run, and get their rows back.

One :class:`DynamicBatcher` serves one model. ``submit`` puts a validated request batch in a
bounded queue and awaits its future. A worker task takes the oldest request, waits up to
``max_delay_s`` for more (or until ``max_batch_size`` instances are queued), merges them, runs the
model in a thread of its own (so the event loop keeps serving health checks and new requests),
and resolves every future with its exact rows. With ``concurrency`` above 1, that many workers
take batches from the same queue and run them at once (one session each, see
``service.runtime.InstancePool``). When a run fails, every request of that batch
gets the exception. A request whose deadline passes, or whose client goes away, is cancelled and
skipped if it has not run yet.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from service.batching.merge import merge_requests, split_outputs
from service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    ModelNotReadyError,
    QueueFullError,
    ServiceError,
)

Outputs = dict[str, np.ndarray]
RunBatch = Callable[[np.ndarray], Outputs]


class BatchObserver(Protocol):
    """Receives batching events (the metrics module implements it)."""

    def batch_ran(self, size: int, requests: int, seconds: float) -> None:
        """Called after each model run with its instance and request counts."""

    def queue_changed(self, depth: int) -> None:
        """Called whenever the number of waiting requests changes."""

    def batch_timed(self, timing: BatchTiming) -> None:
        """Called after each successful run with where its requests' time went."""

    def request_dropped(self, reason: str) -> None:
        """Called for each request taken off the queue unrun: ``"client_gone"`` or ``"deadline"``."""


@dataclass(frozen=True)
class BatchTiming:
    """Where the time of one batch went: queueing per request, then the batch's compute.

    Attributes:
        queue_s: for each request of the batch, its wait from submission until the batch was taken.
        input_s: merging the requests into one array.
        infer_s: the model run.
        output_s: splitting the outputs back into each request's rows.
    """

    queue_s: tuple[float, ...]
    input_s: float
    infer_s: float
    output_s: float


@dataclass
class _Waiting:
    batch: np.ndarray
    future: asyncio.Future[Outputs]
    enqueued_at: float = field(default_factory=time.monotonic)

    @property
    def size(self) -> int:
        return len(self.batch)


class DynamicBatcher:
    """Merges concurrent requests for one model into batched runs.

    Args:
        run: the function that runs one merged batch (``LoadedModel.run``); called in a
            dedicated worker thread, never on the event loop.
        max_batch_size: most instances in one run; a larger single request runs alone.
        max_delay_s: longest time the oldest request waits for others to join; ``0`` runs
            whatever is queued as soon as the worker is free.
        max_queue: most requests waiting; one more gets :class:`QueueFullError` (503).
        observer: optional receiver of batch and queue events.
        name: used in error messages.
        concurrency: batches run at once, each in a worker thread of its own; ``run`` must
            then be safe to call from that many threads (an ``InstancePool`` of as many sessions).
    """

    def __init__(self, run: RunBatch, *, max_batch_size: int = 64, max_delay_s: float = 0.0,
                 max_queue: int = 1024, observer: BatchObserver | None = None, name: str = "model",
                 concurrency: int = 1) -> None:
        if max_batch_size < 1:
            raise ValueError(f"expected max_batch_size >= 1, received {max_batch_size}")
        if max_delay_s < 0:
            raise ValueError(f"expected max_delay_s >= 0, received {max_delay_s}")
        if max_queue < 1:
            raise ValueError(f"expected max_queue >= 1, received {max_queue}")
        if concurrency < 1:
            raise ValueError(f"expected concurrency >= 1, received {concurrency}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self._observer = observer
        self.name = name
        self.concurrency = concurrency
        self._waiting: collections.deque[_Waiting] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Starts the worker tasks on the running event loop (idempotent)."""
        if self._workers:
            return
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                            thread_name_prefix=f"lc2d-{self.name}")
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._work(), name=f"batcher-{self.name}-{i}")
                         for i in range(self.concurrency)]

    async def close(self) -> None:
        """Stops accepting requests, runs everything already queued, then stops the worker."""
        self._closing = True
        if not self._workers:
            return
        assert self._wakeup is not None
        self._wakeup.set()
        await asyncio.gather(*self._workers)
        self._workers = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queue_depth(self) -> int:
        """Requests waiting (not yet running)."""
        return len(self._waiting)

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    # --- requests ------------------------------------------------------------------------------

    def refuse_if_full(self) -> None:
        """Raises :class:`QueueFullError` (503) when ``max_queue`` requests wait; routes call it
        before reading a body, so that a full queue costs a refused client nothing more."""
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(f"model {self.name!r} has {len(self._waiting)} requests waiting "
                                 f"(the limit is {self.max_queue}); retry later",
                                 retry_after_s=1, queue_limit=self.max_queue)

    async def submit(self, batch: np.ndarray, timeout_s: float | None = None) -> Outputs:
        """Queues one validated request batch and waits for its outputs.

        Args:
            batch: ``[n, *instance_shape]`` float32, already validated.
            timeout_s: deadline from now; ``None`` waits as long as it takes.

        Returns:
            Output name -> exactly this request's ``n`` rows, in order.

        Raises:
            ModelNotReadyError: the batcher is closing or not started.
            QueueFullError: ``max_queue`` requests are already waiting.
            DeadlineExceededError: no answer within ``timeout_s``.
            InferenceFailedError: the batch this request ran in failed.
        """
        if self._closing or not self._workers or self._wakeup is None:
            raise ModelNotReadyError(f"model {self.name!r} is not accepting requests (shutting down)")
        self.refuse_if_full()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        entry = _Waiting(batch, future)
        self._waiting.append(entry)
        future.add_done_callback(lambda _: self._leave_unrun(entry))
        self._queue_changed()
        self._wakeup.set()
        # The deadline fails the future itself (a request that has not run is then skipped), so
        # the answer reaches this task one loop step after the batch, not via asyncio.wait_for's
        # extra waiter. A cancelled caller (client gone) cancels the future the same way.
        expiry = None if timeout_s is None else loop.call_later(timeout_s, self._expire, future, timeout_s)
        try:
            return await future
        finally:
            if expiry is not None:
                expiry.cancel()

    # --- worker --------------------------------------------------------------------------------

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            self._drop_finished_heads()
            if not self._waiting:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._wait_for_more()
            taken = self._take_batch()
            if taken:
                await self._run_batch(taken)

    async def _wait_for_more(self) -> None:
        """Waits until max_batch_size instances queue up, max_delay_s passes, or we close."""
        assert self._wakeup is not None
        deadline = self._waiting[0].enqueued_at + self.max_delay_s
        while not self._closing and self._queued_instances() < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take_batch(self) -> list[_Waiting]:
        """Pops the oldest live requests while they fit in max_batch_size (the first always fits)."""
        taken: list[_Waiting] = []
        total = 0
        while self._waiting:
            head = self._waiting[0]
            if head.future.done():  # cancelled by its deadline or its client
                self._drop_head()
                continue
            if taken and total + head.size > self.max_batch_size:
                break
            taken.append(self._waiting.popleft())
            total += head.size
        self._queue_changed()
        return taken

    async def _run_batch(self, taken: list[_Waiting]) -> None:
        """Runs one merged batch in the worker thread and answers every request of it.

        The thread also splits the outputs and hands everything back in one loop callback that
        resolves the requests' futures directly: an answer reaches its request one loop step
        after the run, not via an executor future and this task first.
        """
        taken_at = time.monotonic()
        merged, sizes = merge_requests([item.batch for item in taken])
        started = time.monotonic()
        waits = tuple(taken_at - item.enqueued_at for item in taken)
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def run_and_split() -> None:
            timing = None
            try:
                ran = time.monotonic()
                outputs = self._run(merged)
                split = time.monotonic()
                pieces, failure = split_outputs(outputs, sizes), None
                timing = BatchTiming(waits, started - taken_at, split - ran, time.monotonic() - split)
            except Exception as err:  # handed to every waiting caller; nobody hangs
                pieces, failure = None, err
            loop.call_soon_threadsafe(self._deliver, taken, pieces, failure, finished, len(merged), started,
                                      timing)

        assert self._executor is not None
        try:
            self._executor.submit(run_and_split)
        except RuntimeError as err:  # the executor is shut down
            self._deliver(taken, None, err, finished, len(merged), started, None)
        await finished

    def _deliver(self, taken: list[_Waiting], pieces: list[Outputs] | None, failure: Exception | None,
                 finished: asyncio.Future[None], size: int, started: float,
                 timing: BatchTiming | None) -> None:
        """On the loop: resolves each request with its rows, or every request with the failure."""
        if pieces is None:
            error = failure if isinstance(failure, ServiceError) else InferenceFailedError(
                f"model {self.name!r} failed on a batch of {size}: {failure}")
            for item in taken:
                if not item.future.done():
                    item.future.set_exception(error)
        else:
            for item, piece in zip(taken, pieces, strict=True):
                if not item.future.done():
                    item.future.set_result(piece)
            if self._observer is not None:  # after the answers: their tasks run first
                loop = asyncio.get_running_loop()
                loop.call_soon(self._observer.batch_ran, size, len(taken), time.monotonic() - started)
                if timing is not None:
                    loop.call_soon(self._observer.batch_timed, timing)
        finished.set_result(None)

    def _expire(self, future: asyncio.Future[Outputs], timeout_s: float) -> None:
        if not future.done():
            future.set_exception(DeadlineExceededError(
                f"model {self.name!r} did not answer within the {timeout_s:g} s deadline",
                deadline_s=timeout_s))

    def _leave_unrun(self, entry: _Waiting) -> None:
        """A request finished while still queued (client gone, deadline): off the queue at once,
        so it neither waits for a worker to skip it nor holds a place ``max_queue`` counts."""
        if not entry.future.cancelled() and entry.future.exception() is None:
            return  # answered: it had left the queue to run
        try:
            self._waiting.remove(entry)
        except ValueError:
            return  # it was taken into a batch already (the batch's failure was its answer)
        self._report_drop(entry)
        self._queue_changed()

    def _drop_finished_heads(self) -> None:
        while self._waiting and self._waiting[0].future.done():
            self._drop_head()

    def _drop_head(self) -> None:
        """Takes a finished request off the queue without running it, and says why."""
        self._report_drop(self._waiting.popleft())

    def _report_drop(self, entry: _Waiting) -> None:
        if self._observer is not None:
            self._observer.request_dropped("client_gone" if entry.future.cancelled() else "deadline")

    def _queued_instances(self) -> int:
        return sum(item.size for item in self._waiting if not item.future.done())

    def _queue_changed(self) -> None:
        if self._observer is not None:
            self._observer.queue_changed(len(self._waiting))
