"""DynamicBatcher and merge/split: exact rows back, deadlines, failures and cancellation."""

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest

from service.batching import BatchTiming, DynamicBatcher, merge_requests, split_outputs
from service.errors import DeadlineExceededError, InferenceFailedError, ModelNotReadyError, QueueFullError


def doubled(batch: np.ndarray) -> dict[str, np.ndarray]:
    """A model with two outputs whose rows depend only on their own instance."""
    return {"twice": batch * 2.0, "sum": batch.reshape(len(batch), -1).sum(axis=1)}


class Recorder:
    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.depths: list[int] = []
        self.timings: list[BatchTiming] = []
        self.dropped: list[str] = []

    def batch_ran(self, size: int, requests: int, seconds: float) -> None:
        self.sizes.append(size)

    def queue_changed(self, depth: int) -> None:
        self.depths.append(depth)

    def batch_timed(self, timing: BatchTiming) -> None:
        self.timings.append(timing)

    def request_dropped(self, reason: str) -> None:
        self.dropped.append(reason)


def submit_all(requests: list[np.ndarray], **options: Any) -> list[dict[str, np.ndarray]]:
    """Submits every request concurrently to a ``doubled`` batcher, then closes it."""

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = DynamicBatcher(doubled, **options)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return answers

    return asyncio.run(scenario())


def test_merge_and_split_return_each_request_its_rows(rng: np.random.Generator) -> None:
    requests = [rng.random((n, 3, 2)).astype(np.float32) for n in (1, 4, 2)]
    merged, sizes = merge_requests(requests)
    assert merged.shape == (7, 3, 2) and sizes == [1, 4, 2]
    pieces = split_outputs(doubled(merged), sizes)
    for request, piece in zip(requests, pieces, strict=True):
        np.testing.assert_array_equal(piece["twice"], request * 2.0)
        np.testing.assert_allclose(piece["sum"], request.reshape(len(request), -1).sum(axis=1), rtol=1e-6)


def test_split_outputs_refuses_a_wrong_row_count() -> None:
    with pytest.raises(ValueError, match="expected 3 rows"):
        split_outputs({"y": np.ones((2, 1))}, [1, 2])


def test_batcher_merges_concurrent_requests_and_splits_exactly(rng: np.random.Generator) -> None:
    recorder = Recorder()
    requests = [rng.random((int(n), 2, 2)).astype(np.float32) for n in rng.integers(1, 4, 20)]

    answers = submit_all(requests, max_batch_size=16, max_delay_s=0.05, observer=recorder)
    for request, answer in zip(requests, answers, strict=True):
        np.testing.assert_array_equal(answer["twice"], request * 2.0)
    assert sum(recorder.sizes) == sum(len(r) for r in requests)
    assert max(recorder.sizes) <= 16
    assert len(recorder.sizes) < len(requests)  # requests really were merged


def test_batcher_runs_off_the_event_loop() -> None:
    started = threading.Event()

    def slow(batch: np.ndarray) -> dict[str, np.ndarray]:
        started.set()
        time.sleep(0.3)
        return {"y": batch}

    async def scenario() -> float:
        batcher = DynamicBatcher(slow, max_batch_size=4)
        batcher.start()
        pending = asyncio.ensure_future(batcher.submit(np.ones((1, 2), np.float32)))
        while not started.is_set():
            await asyncio.sleep(0.005)
        tick = time.monotonic()
        await asyncio.sleep(0.01)  # the loop still turns while the batch computes
        latency = time.monotonic() - tick
        await pending
        await batcher.close()
        return latency

    assert asyncio.run(scenario()) < 0.15


def test_batcher_gives_every_request_of_a_failed_batch_the_error() -> None:
    def broken(batch: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("kernel exploded")

    async def scenario() -> list[object]:
        batcher = DynamicBatcher(broken, max_batch_size=8, max_delay_s=0.05)
        batcher.start()
        results = await asyncio.wait_for(asyncio.gather(
            *(batcher.submit(np.ones((1, 2), np.float32)) for _ in range(5)), return_exceptions=True), 5)
        await batcher.close()
        return list(results)

    results = asyncio.run(scenario())
    assert len(results) == 5
    assert all(isinstance(r, InferenceFailedError) and "kernel exploded" in str(r) for r in results)


def test_batcher_fails_every_request_when_a_run_returns_the_wrong_rows() -> None:
    def drops_a_row(batch: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": batch[1:] * 2.0}

    async def scenario() -> list[object]:
        batcher = DynamicBatcher(drops_a_row, max_batch_size=8, max_delay_s=0.05)
        batcher.start()
        failed = await asyncio.wait_for(asyncio.gather(
            *(batcher.submit(np.full((1, 2), i, np.float32)) for i in range(3)), return_exceptions=True), 5)
        later = await asyncio.wait_for(asyncio.gather(  # the worker still serves the next batch
            batcher.submit(np.ones((2, 2), np.float32)), return_exceptions=True), 5)
        await batcher.close()
        return [*failed, *later]

    results = asyncio.run(scenario())
    assert len(results) == 4
    assert all(isinstance(r, InferenceFailedError) for r in results), results
    assert all("expected 3 rows" in str(r) for r in results[:3]) and "expected 2 rows" in str(results[3])


def test_batcher_deadline_gives_deadline_exceeded_and_skips_the_request() -> None:
    calls: list[int] = []

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        return {"y": batch}

    async def scenario() -> None:
        batcher = DynamicBatcher(run, max_batch_size=8, max_delay_s=0.5)
        batcher.start()
        with pytest.raises(DeadlineExceededError, match="0.05 s deadline"):
            await batcher.submit(np.ones((1, 2), np.float32), timeout_s=0.05)
        await batcher.close()

    asyncio.run(scenario())
    assert calls == []  # the expired request never ran


def test_batcher_skips_a_cancelled_request_and_serves_the_others() -> None:
    calls: list[int] = []

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        calls.append(len(batch))
        return {"y": batch + 1}

    async def scenario() -> dict[str, np.ndarray]:
        batcher = DynamicBatcher(run, max_batch_size=8, max_delay_s=0.1)
        batcher.start()
        cancelled = asyncio.ensure_future(batcher.submit(np.zeros((3, 2), np.float32)))
        kept = asyncio.ensure_future(batcher.submit(np.ones((1, 2), np.float32)))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        answer = await kept
        await batcher.close()
        return answer

    answer = asyncio.run(scenario())
    np.testing.assert_array_equal(answer["y"], np.full((1, 2), 2.0))
    assert calls == [1]


def test_batcher_takes_a_cancelled_request_off_the_queue_at_once_and_reports_it() -> None:
    recorder = Recorder()
    release = threading.Event()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        release.wait(10)  # the first batch holds the worker while the others wait
        return {"y": batch}

    async def scenario() -> tuple[int, int]:
        batcher = DynamicBatcher(run, max_batch_size=1, max_queue=2, observer=recorder)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit(np.zeros((1, 2), np.float32)))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(batcher.submit(np.zeros((1, 2), np.float32))) for _ in range(2)]
        await asyncio.sleep(0.01)
        full = batcher.queue_depth
        for task in waiting:
            task.cancel()
        await asyncio.sleep(0)
        after = batcher.queue_depth  # while the worker is still busy: no skipping needed
        release.set()
        await running
        await batcher.close()
        return full, after

    assert asyncio.run(scenario()) == (2, 0)
    assert recorder.dropped == ["client_gone", "client_gone"]


def test_batcher_refuses_requests_beyond_max_queue_with_retry_after() -> None:
    async def scenario() -> QueueFullError:
        batcher = DynamicBatcher(doubled, max_batch_size=64, max_delay_s=0.2, max_queue=2)
        batcher.start()
        first = [asyncio.ensure_future(batcher.submit(np.ones((1, 2), np.float32))) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError) as info:
            await batcher.submit(np.ones((1, 2), np.float32))
        await asyncio.gather(*first)
        await batcher.close()
        return info.value

    error = asyncio.run(scenario())
    assert error.status_code == 503 and error.headers["Retry-After"] == "1"


def test_batcher_close_runs_queued_requests_then_refuses_new_ones() -> None:
    async def scenario() -> None:
        batcher = DynamicBatcher(doubled, max_batch_size=64, max_delay_s=10.0)
        batcher.start()
        queued = [asyncio.ensure_future(batcher.submit(np.full((1, 2), i, np.float32))) for i in range(3)]
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await batcher.close()  # does not wait the 10 s delay
        assert time.monotonic() - started < 2
        for i, future in enumerate(queued):
            np.testing.assert_array_equal(future.result()["twice"], np.full((1, 2), 2.0 * i))
        with pytest.raises(ModelNotReadyError):
            await batcher.submit(np.ones((1, 2), np.float32))

    asyncio.run(scenario())


def test_batcher_never_exceeds_max_batch_size_and_keeps_order(rng: np.random.Generator) -> None:
    recorder = Recorder()
    requests = [np.full((int(n), 1), i, np.float32) for i, n in enumerate(rng.integers(1, 5, 40))]

    for i, answer in enumerate(submit_all(requests, max_batch_size=5, max_delay_s=0.01, observer=recorder)):
        np.testing.assert_array_equal(answer["twice"], requests[i] * 2)
    assert max(recorder.sizes) <= 5


def test_batcher_with_concurrency_runs_that_many_batches_at_once() -> None:
    # Each run waits until two runs are inside at the same time: one worker alone would time out.
    both_inside = threading.Barrier(2, timeout=10)

    def meets_another(batch: np.ndarray) -> dict[str, np.ndarray]:
        both_inside.wait()
        return doubled(batch)

    async def scenario() -> list[dict[str, np.ndarray]]:
        batcher = DynamicBatcher(meets_another, max_batch_size=1, concurrency=2)
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(np.full((1, 2), i, np.float32)) for i in range(4)))
        await batcher.close()
        return answers

    for i, answer in enumerate(asyncio.run(scenario())):
        np.testing.assert_array_equal(answer["twice"], np.full((1, 2), 2.0 * i))


def test_batcher_reports_queue_time_apart_from_compute_time() -> None:
    recorder = Recorder()

    def slow(batch: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(0.1)
        return doubled(batch)

    async def scenario() -> None:
        batcher = DynamicBatcher(slow, max_batch_size=1, observer=recorder)
        batcher.start()
        await asyncio.gather(*(batcher.submit(np.ones((1, 2), np.float32)) for _ in range(2)))
        await batcher.close()
        await asyncio.sleep(0)  # the observer is called one loop step after the answers

    asyncio.run(scenario())
    first, second = recorder.timings
    assert len(first.queue_s) == len(second.queue_s) == 1
    assert first.infer_s >= 0.09 and second.infer_s >= 0.09
    # The second request queued while the first ran: its wait covers that run, the first's did not.
    assert second.queue_s[0] >= 0.8 * first.infer_s > first.queue_s[0]
    assert min(first.input_s, first.output_s) >= 0


@pytest.mark.parametrize("kwargs", [{"max_batch_size": 0}, {"max_delay_s": -1.0}, {"max_queue": 0},
                                    {"concurrency": 0}])
def test_batcher_refuses_invalid_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="expected"):
        DynamicBatcher(doubled, **kwargs)  # type: ignore[arg-type]
