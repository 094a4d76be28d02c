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
from typing import Any, Protocol

import numpy as np
from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from service.providers import Device
from service.scoring.engines import ENGINES, EngineName
from service.scoring.errors import ScoringInputError
from service.scoring.scorer import check_source, pick_output
from service.scoring.sources import RowSource, open_source
from service.scoring.writer import NpyRowWriter, WriterStats


@pydantic_dataclass(frozen=True, config=ConfigDict(use_attribute_docstrings=True))
class ScoringJob:
    """Everything ``lc2d score`` was asked to do; its options are generated from these fields.

    Raises:
        pydantic.ValidationError (a ValueError): a value out of range, an output that is not
            ``.npy``, a Ray address without the Ray engine.
    """

    model_path: Path
    """The .onnx model (as written by lc2d export)."""

    input_path: Path
    """.npy file (read a batch at a time, any size), .npz file (see --key) or a folder of PNG/JPEG
    images (file-name order)."""

    output_path: Path
    """The .npy to write; OUTPUT.summary.json (and OUTPUT.order.txt for image folders) go next to it."""

    batch_size: int = Field(default=256, gt=0)
    """Rows per ONNX Runtime call; bounds memory."""

    device: Device = "auto"
    """auto (CUDA when available), cpu, cuda or tensorrt."""

    threads: int | None = Field(default=None, gt=0)
    """ONNX Runtime intra-op threads (per actor with the Ray engine, 1 there by default); unset lets
    ONNX Runtime decide."""

    key: str | None = None
    """The array of a .npz to score; optional when it holds one array."""

    output_name: str | None = None
    """The model output to write; unset: the first graph output."""

    allow_non_finite: bool = False
    """Accept NaN and infinities (refused by default, as by the server)."""

    engine: EngineName = "local"
    """local (one process) or ray (Ray Data, actor pool)."""

    ray_address: str | None = None
    """Ray cluster to join (e.g. ray://head:10001); unset starts a local Ray instance."""

    actors: int = Field(default=2, gt=0)
    """ONNX Runtime actors (one session each) with the Ray engine."""

    overwrite: bool = False
    """Replace an existing output (and its summary and order files); without it an existing output
    is refused, so that an old result is never mistaken for this run's."""

    @field_validator("output_path")
    @classmethod
    def _npy_output(cls, value: Path) -> Path:
        if value.suffix != ".npy":
            raise ValueError("expected a path ending in .npy")
        return value

    @field_validator("ray_address")
    @classmethod
    def _ray_address_needs_ray(cls, value: str | None, info: ValidationInfo) -> str | None:
        engine = info.data.get("engine")
        if value is not None and engine != "ray":
            raise ValueError(f"expected together with the ray engine, received engine {engine!r}")
        return value

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
        try:
            if self.writer is None:
                self.writer = NpyRowWriter(self.path, self.rows, values.shape[1:], values.dtype)
            self.writer.write(start, values)
        except OSError as err:  # a full disk, a path that became unwritable
            raise output_error(self.path, err) from err
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
    engine = ENGINES[job.engine](job)
    contract = engine.contract  # what the file says; each engine's BatchScorer applies the NaN policy
    output_name = pick_output(contract, job.output_name)
    source = open_source(job.input_path, contract, job.key)
    try:
        check_source(contract, source)
        sink = OutputSink(job.output_path, source.shape[0])
        sink.on_write = on_write
        if progress is not None:
            progress.start(source.shape[0], source.description)
        scoring_began = time.perf_counter()
        try:
            count = engine.score(source, output_name, sink, progress.advance if progress else None)
            assert sink.writer is not None
            writes = sink.writer.stats.writes
            sink.writer.commit()
        finally:
            if sink.writer is not None:
                sink.writer.abort()  # no-op after commit; deletes the partial file after a failure
    finally:
        source.close()
    scoring_time = time.perf_counter() - scoring_began
    summary = ScoringSummary(
        count=count, output_shape=list(sink.writer.shape), output_name=output_name,
        throughput_rows_per_s=count / scoring_time if scoring_time > 0 else 0.0,
        scoring_time_s=scoring_time, wall_time_s=time.perf_counter() - began,
        model=str(job.model_path), model_name=contract.model_name, providers=engine.providers,
        engine=job.engine, batch_size=job.batch_size, input=source.description,
        output=str(job.output_path), writes=writes, order_file=_write_order(job, source),
        extra=engine.summary_extra())
    try:
        job.summary_path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    except OSError as err:
        raise output_error(job.summary_path, err) from err
    return summary


def output_error(path: Path, err: OSError) -> ScoringInputError:
    """One line for an output that cannot be written (exit code 2)."""
    return ScoringInputError(f"-o/--output: expected a writable path, received {str(path)!r}: "
                             f"{err.strerror or err}")


def _check_paths(job: ScoringJob) -> None:
    """Refuses outputs that cannot be written or would hide an earlier result, before any work."""
    output = job.output_path
    if job.input_path.exists() and output.resolve() == job.input_path.resolve():
        raise ScoringInputError(f"-o/--output must differ from the input, received "
                                f"{str(output)!r} for both")
    if output.is_dir():
        raise ScoringInputError(f"-o/--output: expected a file path, received {str(output)!r}, a directory")
    earlier = [path for path in (output, job.summary_path, job.order_path) if path.exists()]
    if earlier and not job.overwrite:
        raise ScoringInputError(f"-o/--output: {str(output)!r} exists from an earlier run "
                                f"({', '.join(path.name for path in earlier)}); expected a new path, "
                                "or --overwrite to replace it")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        for path in earlier:  # gone before scoring starts: a failed run leaves no old result behind
            path.unlink()
        probe = output.with_name(output.name + ".partial")
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise output_error(output, err) from err


def _write_order(job: ScoringJob, source: RowSource) -> str | None:
    names = source.row_names
    if names is None:
        return None
    try:
        job.order_path.write_text("".join(f"{name}\n" for name in names))
    except OSError as err:
        raise output_error(job.order_path, err) from err
    return str(job.order_path)
