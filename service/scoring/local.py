"""The local engine: one process, one ONNX Runtime session, batches in input order.

The next batch is read (or decoded, for images) on a helper thread while ONNX Runtime runs the
current one; ONNX Runtime releases the GIL, so reading and inference overlap. At most two
batches of input are in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from service.scoring.scorer import BatchScorer, batch_bounds
from service.scoring.sources import RowSource

ResultSink = Callable[[int, np.ndarray], None]
"""Receives ``(first_row, outputs)`` for each scored batch."""


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
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lc2d-score-read") as reader:
        pending: Future[np.ndarray] | None = reader.submit(source.read, *bounds[0]) if bounds else None
        for index, (start, stop) in enumerate(bounds):
            assert pending is not None
            batch = pending.result()
            pending = reader.submit(source.read, *bounds[index + 1]) if index + 1 < len(bounds) else None
            sink(start, scorer.score(batch, start))
            if on_rows is not None:
                on_rows(stop - start)
    return source.shape[0]
