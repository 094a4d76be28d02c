"""Checking an input against the model before any work, and scoring one batch of rows.

Both engines use these: the local loop calls :meth:`BatchScorer.score` in the process, each Ray
actor holds its own :class:`BatchScorer`. A batch goes through the very code the server uses,
``InputContract.validate_batch`` then ``LoadedModel.run``, so a row scores bit-for-bit like the
same row sent to ``/predict`` in a batch of the same composition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from service.contract import NO_LIMITS, InputContract, InputLimits
from service.errors import InvalidInputError, ServiceError
from service.runtime import LoadedModel
from service.scoring.errors import ScoringInputError
from service.scoring.sources import RowSource

ResultSink = Callable[[int, np.ndarray], None]
"""Receives ``(first_row, outputs)`` for each scored run of rows."""


def batch_bounds(rows: int, batch_size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """Yields ``(start, stop)`` of consecutive batches; the last one may be shorter.

    Batch ``k`` is always rows ``[k * batch_size, (k + 1) * batch_size)``, whichever engine
    runs it, so both engines feed ONNX Runtime the same batches.
    """
    for first in range(start, rows, batch_size):
        yield first, min(first + batch_size, rows)


def check_source(contract: InputContract, source: RowSource) -> None:
    """Checks the input's shape and dtype against the contract without reading its data.

    The messages are the server's: the same ``validate_batch`` raises them, given a zero-copy
    stand-in of the whole input (for the shape) and one empty row (for the dtype).

    Raises:
        ShapeMismatchError, EmptyBatchError, DtypeError: as ``/predict`` would (exit code 2).
    """
    stand_in = np.broadcast_to(np.zeros((), dtype=np.float32), source.shape)
    if source.shape[0] == 0 or not _same_instance_shape(contract, source.shape[1:]):
        contract.validate_batch(stand_in)  # raises the server's shape / empty-batch error
    contract.validate_batch(np.zeros((1, *source.shape[1:]), dtype=source.dtype))


@dataclass
class BatchScorer:
    """Validates and runs batches of one model, keeping one of its outputs.

    Attributes:
        model: the loaded model.
        output_name: the graph output to keep.
        limits: what each batch is checked against besides the contract (the NaN/Inf policy;
            scoring sets no batch-size limit).
    """

    model: LoadedModel
    output_name: str
    limits: InputLimits = NO_LIMITS

    @classmethod
    def for_model(cls, model: LoadedModel, output_name: str | None = None,
                  allow_non_finite: bool = False) -> BatchScorer:
        """Picks ``output_name`` (default: the first graph output) and the NaN/Inf policy.

        Raises:
            ScoringInputError: an output name the model does not have.
        """
        output_name = pick_output(model.contract, output_name)
        return cls(model=model, output_name=output_name,
                   limits=InputLimits(allow_non_finite=allow_non_finite))

    def score(self, batch: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Validates ``batch`` as ``/predict`` does and returns the kept output.

        Args:
            batch: rows as read from the source.
            first_row: index of the batch's first row in the input (for error messages).

        Raises:
            InvalidInputError: the server's message, prefixed with the rows it concerns.
            InferenceFailedError: ONNX Runtime failed.
        """
        try:
            valid = self.model.contract.validate_batch(batch, self.limits)
        except InvalidInputError as err:
            raise type(err)(f"rows {first_row}..{first_row + len(batch) - 1}: {err.message}",
                            **err.details) from err
        return self.model.run(valid)[self.output_name]


def pick_output(contract: InputContract, output_name: str | None) -> str:
    """``output_name``, or the first graph output when None.

    Raises:
        ScoringInputError: an output name the model does not have.
    """
    names = list(contract.output_names)
    if output_name is None:
        return names[0]
    if output_name not in names:
        raise ScoringInputError(f"--output-name: expected one of {names}, received {output_name!r}")
    return output_name


def find_service_error(error: BaseException) -> ServiceError | None:
    """The first :class:`ServiceError` in an exception's cause chain (Ray wraps worker errors)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ServiceError):
            return current
        seen.add(id(current))
        current = getattr(current, "cause", None) or current.__cause__
    return None


def _same_instance_shape(contract: InputContract, shape: tuple[int, ...]) -> bool:
    expected = contract.instance_shape
    return len(shape) == len(expected) and all(e is None or s == e for s, e in zip(shape, expected,
                                                                                   strict=True))
