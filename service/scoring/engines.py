"""Scoring engines: how a job's batches are run, chosen by name from :data:`ENGINES`.

An :class:`Engine` is created from the :class:`~service.scoring.job.ScoringJob`; it knows the
model's contract before any row is read (so the input is checked first), then scores a
:class:`~service.scoring.sources.RowSource` into a sink, in input order.

* ``local`` (:class:`LocalEngine`): one ONNX Runtime session in this process.
* ``ray`` (:class:`RayEngine`): Ray Data and an actor pool, one session per actor; the driver
  reads the contract from the file without a session (``InputContract.from_file``).

To add an engine: write a class with the members of :class:`Engine` whose constructor takes the
job, add its name to :data:`EngineName` and the class to :data:`ENGINES` (``--engine`` choices
follow), and test that it matches the local engine on the same input.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from service.contract import InputContract
from service.providers import plan_providers
from service.runtime import load_model
from service.scoring.errors import ScoringInputError
from service.scoring.local import score_local
from service.scoring.scorer import BatchScorer, ResultSink
from service.scoring.sources import RowSource

if TYPE_CHECKING:
    from service.scoring.job import ScoringJob

EngineName = Literal["local", "ray"]


class Engine(Protocol):
    """How the batches of one scoring job are run."""

    @property
    def contract(self) -> InputContract:
        """The model's contract, known before any row is read."""

    @property
    def providers(self) -> list[str]:
        """The execution providers that score (for the summary)."""

    def score(self, source: RowSource, output_name: str, sink: ResultSink,
              on_rows: Callable[[int], None] | None) -> int:
        """Scores every row of ``source``, calling ``sink(first_row, outputs)`` in input order.

        Returns:
            The number of rows scored.

        Raises:
            ServiceError: a contract error in a batch (exit code 2) or an inference failure.
        """

    def summary_extra(self) -> dict[str, Any]:
        """Engine-specific fields of the job summary."""


class LocalEngine:
    """One ONNX Runtime session in this process (see :mod:`service.scoring.local`)."""

    def __init__(self, job: ScoringJob) -> None:
        self.job = job
        self.model = load_model(job.model_path, job.device, job.threads)

    @property
    def contract(self) -> InputContract:
        return self.model.contract

    @property
    def providers(self) -> list[str]:
        return self.model.providers

    def score(self, source: RowSource, output_name: str, sink: ResultSink,
              on_rows: Callable[[int], None] | None) -> int:
        scorer = BatchScorer.for_model(self.model, output_name, self.job.allow_non_finite)
        return score_local(scorer, source, self.job.batch_size, sink, on_rows)

    def summary_extra(self) -> dict[str, Any]:
        return {}


class RayEngine:
    """Ray Data with a pool of ONNX Runtime actors (see :mod:`service.scoring.ray_engine`)."""

    def __init__(self, job: ScoringJob) -> None:
        if importlib.util.find_spec("ray") is None:
            raise ScoringInputError("--engine ray: expected Ray Data to be installed, received an "
                                    "environment without it; pip install 'lc2d-serve[ray]'")
        self.job = job
        self._contract = InputContract.from_file(job.model_path)
        self._providers = plan_providers(job.device, job.model_path).names

    @property
    def contract(self) -> InputContract:
        return self._contract

    @property
    def providers(self) -> list[str]:
        return self._providers

    def score(self, source: RowSource, output_name: str, sink: ResultSink,
              on_rows: Callable[[int], None] | None) -> int:
        from service.scoring.ray_engine import ActorSettings, score_with_ray

        job = self.job
        settings = ActorSettings(model_path=str(job.model_path.resolve()), device=job.device,
                                 threads=job.threads or 1, output_name=output_name,
                                 allow_non_finite=job.allow_non_finite, batch_size=job.batch_size)
        return score_with_ray(settings, source, sink, actors=job.actors, address=job.ray_address,
                              on_rows=on_rows)

    def summary_extra(self) -> dict[str, Any]:
        return {"actors": self.job.actors, "ray_address": self.job.ray_address}


ENGINES: dict[EngineName, Callable[[ScoringJob], Engine]] = {"local": LocalEngine, "ray": RayEngine}
"""Engine name -> the class that runs it; the names are those of :data:`EngineName`."""
