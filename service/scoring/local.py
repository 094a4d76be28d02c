"""The local engine: one process, one ONNX Runtime session, batches in input order.

When reading is costly (decoding images, decompressing a ``.npz`` member) the next batch is read
on a helper thread while ONNX Runtime runs the current one; ONNX Runtime releases the GIL, so
the two overlap, and at most two batches of input are in memory. Plain ``.npy`` reads are a
memory copy from the page cache: they are done inline, because a thread hand-off per batch costs
more than the copy when batches are small.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from service.scoring.scorer import BatchScorer, ResultSink, batch_bounds
from service.scoring.sources import RowSource


def score_local(scorer: BatchScorer, source: RowSource, batch_size: int, sink: ResultSink,
                on_rows: Callable[[int], None] | None = None) -> int:
    """Scores every row of ``source`` in batches of ``batch_size``.

    Args:
        scorer: the model, its contract and the output to keep.
        source: the rows.
        batch_size: rows per ONNX Runtime call (the last batch may be shorter).
        sink: called with each batch's first row and outputs, in input order.
        on_rows: called with the number of rows after each batch (progress).

    Returns:
        The number of rows scored.

    Raises:
        InvalidInputError: a batch breaks the contract (NaN, for instance); rows already
            written stay written, the caller decides what to do with the file.
        InferenceFailedError: ONNX Runtime failed.
    """
    bounds = list(batch_bounds(source.shape[0], batch_size))
    if not source.read_ahead:
        for start, stop in bounds:
            _deliver(scorer, source.read(start, stop), start, sink, on_rows)
        return source.shape[0]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lc2d-score-read") as reader:
        pending: Future[np.ndarray] | None = reader.submit(source.read, *bounds[0]) if bounds else None
        for index, (start, _) in enumerate(bounds):
            assert pending is not None
            batch = pending.result()
            pending = reader.submit(source.read, *bounds[index + 1]) if index + 1 < len(bounds) else None
            _deliver(scorer, batch, start, sink, on_rows)
    return source.shape[0]


def _deliver(scorer: BatchScorer, batch: np.ndarray, start: int, sink: ResultSink,
             on_rows: Callable[[int], None] | None) -> None:
    sink(start, scorer.score(batch, start))
    if on_rows is not None:
        on_rows(len(batch))
