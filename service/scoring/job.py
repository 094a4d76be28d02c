"""A scoring job end to end: load, check, score with an engine, write the result and a summary.

Order of work, so that a user error costs nothing: the model is loaded and the input opened and
checked against the contract (shape and dtype, same messages as the server) before the first
batch runs. The output ``.npy`` is created when the first batch's outputs give its row shape,
filled batch by batch, and renamed into place only when complete. Next to it go
``OUTPUT.summary.json`` and, for image folders, ``OUTPUT.order.txt`` (one file name per row).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from service.runtime import load_model
from service.scoring.errors import ScoringInputError
from service.scoring.local import score_local
from service.scoring.scorer import BatchScorer, check_source
from service.scoring.sources import RowSource, open_source
from service.scoring.writer import NpyRowWriter, WriterStats

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class ScoringJob:
    """Everything ``lc2d score`` was asked to do.

    Attributes:
        model_path: the ``.onnx`` model.
        input_path: ``.npy``, ``.npz`` or image folder.
        output_path: the ``.npy`` to write.
        batch_size: rows per ONNX Runtime call.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        threads: ONNX Runtime intra-op threads (per actor with Ray); ``None``: ORT decides
            (local) or 1 (Ray).
        key: the ``.npz`` array to score.
        output_name: the model output to write; ``None``: the first.
        allow_non_finite: accept NaN / Inf inputs, as the server's setting of that name.
        engine: ``"local"`` or ``"ray"``.
        ray_address: the Ray cluster to join; ``None`` starts a local instance.
        actors: Ray actor pool size.
    """

    model_path: Path
    input_path: Path
    output_path: Path
    batch_size: int = 256
    device: str = "auto"
    threads: int | None = None
    key: str | None = None
    output_name: str | None = None
    allow_non_finite: bool = False
    engine: str = "local"
    ray_address: str | None = None
    actors: int = 2

    @property
    def summary_path(self) -> Path:
        """``OUTPUT.summary.json``."""
        return self.output_path.with_suffix(".summary.json")

    @property
    def order_path(self) -> Path:
        """``OUTPUT.order.txt`` (image folders only)."""
        return self.output_path.with_suffix(".order.txt")


@dataclass(frozen=True)
class ScoringSummary:
    """What a finished job reports (written as ``OUTPUT.summary.json``)."""

    count: int
    output_shape: list[int]
    output_name: str
    throughput_rows_per_s: float
    scoring_time_s: float
    wall_time_s: float
    model: str
    model_name: str | None
    providers: list[str]
    engine: str
    batch_size: int
    input: str
    output: str
    writes: int
    order_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


class Progress(Protocol):
    """Where a job reports progress (a tqdm bar in the CLI)."""

    def start(self, total: int, description: str) -> None:
        """Called once, after the checks, with the number of rows."""

    def advance(self, rows: int) -> None:
        """Called after each batch with its number of rows."""


class OutputSink:
    """Creates the output writer from the first batch's outputs, then writes every batch.

    Args:
        path: the output ``.npy``.
        rows: rows the output will hold.
    """

    def __init__(self, path: Path, rows: int) -> None:
        self.path = path
        self.rows = rows
        self.writer: NpyRowWriter | None = None
        self.on_write: Callable[[WriterStats], None] | None = None

    def __call__(self, start: int, values: np.ndarray) -> None:
        if self.writer is None:
            self.writer = NpyRowWriter(self.path, self.rows, values.shape[1:], values.dtype)
        self.writer.write(start, values)
        if self.on_write is not None:
            self.on_write(self.writer.stats)


def run_scoring_job(job: ScoringJob, progress: Progress | None = None,
                    on_write: Callable[[WriterStats], None] | None = None) -> ScoringSummary:
    """Runs a job and writes its output, summary and order files.

    Args:
        job: what to score and how.
        progress: receives the row count, then each batch's rows.
        on_write: called after each write with the writer's statistics.

    Returns:
        The summary also written to ``job.summary_path``.

    Raises:
        ServiceError: a user error (exit code 2: missing file, wrong shape, bad key...) or an
            inference failure (exit code 1). Nothing is left at ``job.output_path`` then.
    """
    began = time.perf_counter()
    _check_paths(job)
    model = load_model(job.model_path, job.device, 1 if job.engine == "ray" else job.threads)
    scorer = BatchScorer.for_model(model, job.output_name, job.allow_non_finite)
    source = open_source(job.input_path, model.contract, job.key)
    check_source(model.contract, source)
    sink = OutputSink(job.output_path, source.shape[0])
    sink.on_write = on_write
    if progress is not None:
        progress.start(source.shape[0], source.description)
    scoring_began = time.perf_counter()
    try:
        count = _run_engine(job, scorer, source, sink, progress)
        assert sink.writer is not None
        writes = sink.writer.stats.writes
        sink.writer.commit()
    finally:
        if sink.writer is not None:
            sink.writer.abort()  # no-op after commit; deletes the partial file after a failure
        close = getattr(source, "close", None)
        if close is not None:
            close()
    scoring_time = time.perf_counter() - scoring_began
    order_file = _write_order(job, source)
    summary = ScoringSummary(
        count=count, output_shape=list(sink.writer.shape), output_name=scorer.output_name,
        throughput_rows_per_s=count / scoring_time if scoring_time > 0 else 0.0,
        scoring_time_s=scoring_time, wall_time_s=time.perf_counter() - began,
        model=str(job.model_path), model_name=model.contract.model_name, providers=model.providers,
        engine=job.engine, batch_size=job.batch_size, input=source.description,
        output=str(job.output_path), writes=writes, order_file=order_file,
        extra={"actors": job.actors, "ray_address": job.ray_address} if job.engine == "ray" else {})
    job.summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return summary


def _run_engine(job: ScoringJob, scorer: BatchScorer, source: RowSource, sink: OutputSink,
                progress: Progress | None) -> int:
    on_rows = progress.advance if progress is not None else None
    if job.engine == "local":
        return score_local(scorer, source, job.batch_size, sink, on_rows)
    from service.scoring.ray_engine import ActorSettings, score_with_ray

    settings = ActorSettings(model_path=str(job.model_path.resolve()), device=job.device,
                             threads=job.threads or 1, output_name=scorer.output_name,
                             allow_non_finite=job.allow_non_finite, batch_size=job.batch_size)
    return score_with_ray(settings, source, sink, actors=job.actors, address=job.ray_address,
                          on_rows=on_rows)


def _check_paths(job: ScoringJob) -> None:
    if job.engine not in ENGINES:
        raise ScoringInputError(f"--engine: expected one of {list(ENGINES)}, received {job.engine!r}")
    if job.output_path.suffix != ".npy":
        raise ScoringInputError(f"-o/--output: expected a path ending in .npy, received "
                                f"{str(job.output_path)!r}")
    if job.batch_size <= 0 or job.actors <= 0:
        raise ScoringInputError(f"expected a positive --batch-size and --actors, received "
                                f"{job.batch_size} and {job.actors}")
    if job.input_path.exists() and job.output_path.resolve() == job.input_path.resolve():
        raise ScoringInputError(f"-o/--output must differ from the input, received "
                                f"{str(job.output_path)!r} for both")


def _write_order(job: ScoringJob, source: RowSource) -> str | None:
    names = source.row_names
    if names is None:
        return None
    job.order_path.write_text("".join(f"{name}\n" for name in names))
    return str(job.order_path)
