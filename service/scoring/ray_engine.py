"""The Ray engine: Ray Data reads the input in blocks, a pool of ONNX Runtime actors scores them.

* :class:`RowBlockDatasource` splits the input into read tasks of consecutive batches; each
  task yields one block per batch (``row`` index column + ``x`` tensor column), reading only
  those rows from the source (so the input is never loaded whole, on any node).
* ``map_batches`` runs :class:`ScoringActor` on a fixed-size actor pool; each actor loads the
  model once (one ONNX Runtime session) in its constructor.
* the driver receives ``(row, y)`` batches and writes them at their row positions, so the output
  is in input order whatever order the batches finish in.

Ray is an optional extra (``lc2d-serve[ray]``); this module is imported only for ``--engine ray``.
Without an address it starts a small local Ray instance and shuts it down afterwards; with one it
joins the cluster (model and input paths must then be readable on every node, e.g. a shared
filesystem). A Ray instance already initialised by the caller is used as it is and left running.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.data import Datasource, ReadTask
from ray.data.block import BlockAccessor, BlockMetadata

from service.errors import ServiceError
from service.ray_cluster import connect_ray
from service.runtime import load_model
from service.scoring.scorer import BatchScorer, ResultSink, batch_bounds, find_service_error
from service.scoring.sources import RowSource

ERROR_COLUMN = "service_error"
READ_TASKS_PER_ACTOR = 4


@dataclass(frozen=True)
class ActorSettings:
    """What each scoring actor needs to load its own session.

    Attributes:
        model_path: the ``.onnx`` file (readable on every node).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        threads: ONNX Runtime intra-op threads per actor.
        output_name: the output to keep.
        allow_non_finite: accept NaN / Inf inputs.
        batch_size: rows per ONNX Runtime call.
    """

    model_path: str
    device: str
    threads: int | None
    output_name: str
    allow_non_finite: bool
    batch_size: int


class RowBlockDatasource(Datasource):
    """A Ray Data datasource over a :class:`RowSource`, one block per scoring batch.

    Args:
        source: the rows (pickled into each read task; it reopens its file there).
        batch_size: rows per block.
    """

    def __init__(self, source: RowSource, batch_size: int) -> None:
        self._source = source
        self._batch_size = batch_size

    def estimate_inmemory_data_size(self) -> int | None:
        # No estimate on purpose: with one, Ray Data splits blocks it thinks too large, and a
        # split block would no longer be one canonical batch.
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        bounds = list(batch_bounds(self._source.shape[0], self._batch_size))
        groups = np.array_split(np.arange(len(bounds)), max(1, min(parallelism, len(bounds))))
        tasks = []
        for group in groups:
            if not len(group):
                continue
            task_bounds = [bounds[i] for i in group]
            rows = task_bounds[-1][1] - task_bounds[0][0]
            metadata = BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None,
                                     input_files=(self._source.description,))
            tasks.append(ReadTask(_block_reader(self._source, task_bounds), metadata,
                                  per_task_row_limit=per_task_row_limit))
        return tasks


def _block_reader(source: RowSource, bounds: list[tuple[int, int]]) -> Callable[[], Iterator[Any]]:
    def read_blocks() -> Iterator[Any]:
        for start, stop in bounds:
            yield BlockAccessor.batch_to_block({"row": np.arange(start, stop, dtype=np.int64),
                                                "x": source.read(start, stop)})
    return read_blocks


class ScoringActor:
    """One ONNX Runtime session, loaded once, scoring the batches Ray Data hands it."""

    def __init__(self, settings: ActorSettings) -> None:
        model = load_model(settings.model_path, settings.device, settings.threads)
        self._scorer = BatchScorer.for_model(model, settings.output_name, settings.allow_non_finite)
        self._batch_size = settings.batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Ray may hand over several blocks at once; split them back into the canonical batches
        # (rows k*B .. (k+1)*B - 1) so that ONNX Runtime sees what the local engine feeds it.
        rows, x = batch["row"], batch["x"]
        outputs = []
        try:
            for part in _canonical_slices(rows, self._batch_size):
                outputs.append(self._scorer.score(np.asarray(x[part]), int(rows[part][0])))
        except ServiceError as err:
            # Ray Data re-raises worker exceptions without their cause, so the typed error
            # (and its exit code) travels back to the driver as data instead.
            return {"row": rows[:1], ERROR_COLUMN: np.array([pickle.dumps(err)], dtype=object)}
        return {"row": rows, "y": np.concatenate(outputs)}


def _canonical_slices(rows: np.ndarray, batch_size: int) -> list[slice]:
    """Slices of ``rows`` (sorted runs of consecutive indices) cut at multiples of ``batch_size``."""
    cuts = np.flatnonzero((np.diff(rows) != 1) | (rows[1:] % batch_size == 0)) + 1
    edges = [0, *cuts.tolist(), len(rows)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def score_with_ray(settings: ActorSettings, source: RowSource, sink: ResultSink, *,
                   actors: int = 2, address: str | None = None,
                   on_rows: Callable[[int], None] | None = None) -> int:
    """Scores every row of ``source`` on a Ray actor pool.

    Args:
        settings: how each actor loads and runs the model.
        source: the rows.
        sink: called with ``(first_row, outputs)`` for each consecutive run of rows.
        actors: size of the actor pool (one session each).
        address: a Ray cluster to join (``ray://...`` or ``host:port``); ``None`` starts a
            local instance.
        on_rows: called with the number of rows after each batch (progress).

    Returns:
        The number of rows scored.

    Raises:
        ServiceError: the first service error a worker raised (contract, model load...).
    """
    started = _init_ray(address, actors)
    try:
        # As many read tasks as asked for: fewer would make Ray Data split every block (breaking
        # the one-block-one-batch rule); a few per actor keeps the pool busy.
        batches = -(-source.shape[0] // settings.batch_size)
        dataset = ray.data.read_datasource(RowBlockDatasource(source, settings.batch_size),
                                           override_num_blocks=min(batches, READ_TASKS_PER_ACTOR * actors))
        scored = dataset.map_batches(ScoringActor, fn_constructor_args=(settings,),
                                     batch_size=None, batch_format="numpy",
                                     compute=ray.data.ActorPoolStrategy(size=actors),
                                     num_cpus=1, zero_copy_batch=True)
        total = 0
        for batch in _iter_batches(scored):
            if ERROR_COLUMN in batch:
                raise pickle.loads(batch[ERROR_COLUMN][0])  # noqa: S301 - written by our own actor
            for part in _canonical_slices(batch["row"], settings.batch_size):
                sink(int(batch["row"][part][0]), np.asarray(batch["y"][part]))
            total += len(batch["row"])
            if on_rows is not None:
                on_rows(len(batch["row"]))
        return total
    finally:
        if started:
            ray.shutdown()


def _iter_batches(dataset: Any) -> Iterator[dict[str, np.ndarray]]:
    try:
        yield from dataset.iter_batches(batch_size=None, batch_format="numpy")
    except ServiceError:
        raise
    except Exception as err:  # Ray wraps worker exceptions in its own types
        cause = find_service_error(err)
        if cause is None:
            raise
        raise cause from err


def _init_ray(address: str | None, actors: int) -> bool:
    """Starts or joins Ray unless already initialised; returns whether this call started it.

    Raises:
        RayClusterUnreachableError: ``address`` does not answer.
    """
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # one logical CPU per actor plus one for the read tasks, or they would wait forever
    return connect_ray(address, num_cpus=actors + 1, object_store_memory=256 * 1024 * 1024)
