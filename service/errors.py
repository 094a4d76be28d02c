"""Errors a client or an operator can meet, each carrying its HTTP status.

Every error the service raises on purpose is a :class:`ServiceError`. ``service.api.routing``
turns it into a JSON body ``{"error": message, "code": ..., ...details}`` with ``status_code``
(the only place that does); the ``error`` key is what the Open Inference Protocol (and ``tritonclient``)
reads. Batch scoring and the CLI reuse the same classes and map them to exit codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_shape(shape: Sequence[int | None]) -> str:
    """Formats a shape as a JSON-like list, with ``None`` for a free dimension.

    Args:
        shape: dimensions, ``None`` where any size is accepted.

    Returns:
        For example ``"[32, 32, 3]"`` or ``"[N, 8, 8, 1]"`` when ``None`` leads.
    """
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


class ServiceError(Exception):
    """Base of every error the service raises on purpose.

    Attributes:
        status_code: the HTTP status a client receives.
        code: a short stable identifier (``"shape_mismatch"``, ``"queue_full"``...).
        exit_code: the exit status when the error stops a command-line program.
        details: extra JSON-serialisable fields for the response body
            (typically ``expected`` and ``received``).
        headers: extra HTTP headers (``Retry-After`` for a full queue).
    """

    status_code: int = 500
    code: str = "internal_error"
    exit_code: int = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        """Returns the JSON body sent to the client."""
        return {"error": self.message, "code": self.code, **self.details}


# --- 4xx: the request is wrong -------------------------------------------------------------------


class InvalidInputError(ServiceError):
    """The request body parsed but its content breaks the model's input contract."""

    status_code = 422
    code = "invalid_input"
    exit_code = 2


class ShapeMismatchError(InvalidInputError):
    """An instance or a batch does not have the shape the model expects."""

    code = "shape_mismatch"


class DtypeError(InvalidInputError):
    """Values that cannot become float32 (strings, objects, booleans, complex numbers)."""

    code = "invalid_dtype"


class NonFiniteInputError(InvalidInputError):
    """NaN or infinite values where only finite values are accepted."""

    code = "non_finite_input"


class BatchTooLargeError(InvalidInputError):
    """More instances in one request than the configured maximum batch size."""

    code = "batch_too_large"


class EmptyBatchError(InvalidInputError):
    """A request with no instance at all."""

    code = "empty_batch"


class MalformedRequestError(ServiceError):
    """The body is not valid JSON / ``.npy``, or misses a required field."""

    status_code = 400
    code = "malformed_request"
    exit_code = 2


class UnsupportedMediaTypeError(ServiceError):
    """A ``Content-Type`` (or ``Accept``) the route does not speak."""

    status_code = 415
    code = "unsupported_media_type"
    exit_code = 2


class NotAcceptableError(ServiceError):
    """An ``Accept`` header asking for a format the route cannot produce."""

    status_code = 406
    code = "not_acceptable"
    exit_code = 2


class PayloadTooLargeError(ServiceError):
    """A body larger than the configured limit."""

    status_code = 413
    code = "payload_too_large"
    exit_code = 2


class RequestTimeoutError(ServiceError):
    """The client did not send its request (headers or body) within the read timeouts."""

    status_code = 408
    code = "request_timeout"
    exit_code = 2


class ClientDisconnectedError(ServiceError):
    """The client closed the connection before its answer (logged and counted as 499, never sent)."""

    status_code = 499
    code = "client_disconnected"
    exit_code = 2


class ModelNotFoundError(ServiceError):
    """No model (or no such version of it) is served under this name."""

    status_code = 404
    code = "model_not_found"
    exit_code = 2


class InvalidModelConfigError(ServiceError):
    """A model configuration (``config.json`` or a load request's override) that does not validate."""

    status_code = 400
    code = "invalid_model_config"
    exit_code = 2


class ModelControlDisabledError(ServiceError):
    """A repository load/unload request while the model control mode is not ``explicit``."""

    status_code = 409
    code = "model_control_disabled"
    exit_code = 2


class InvalidRequestFieldsError(ServiceError):
    """FastAPI refused a request parameter before the endpoint ran."""

    status_code = 422
    code = "invalid_request"
    exit_code = 2


class HTTPRouteError(ServiceError):
    """The router refused the request: no such path (404), or not with this method (405)."""

    code = "http_error"
    exit_code = 2

    def __init__(self, message: str, status_code: int, **details: Any) -> None:
        super().__init__(message, **details)
        self.status_code = status_code


# --- 5xx: the server cannot answer now ---------------------------------------------------------------


class ModelNotReadyError(ServiceError):
    """The model is known but could not be loaded, or the server is shutting down."""

    status_code = 503
    code = "model_not_ready"


class QueueFullError(ServiceError):
    """The batching queue is full; the client should retry after ``retry_after_s`` seconds."""

    status_code = 503
    code = "queue_full"

    def __init__(self, message: str, retry_after_s: int = 1, **details: Any) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **details)
        self.headers["Retry-After"] = str(retry_after_s)


class DeadlineExceededError(ServiceError):
    """The request was not answered within its deadline."""

    status_code = 504
    code = "deadline_exceeded"


class InternalServerError(ServiceError):
    """A fault of the server itself (a bug); the client sees only the request id to report."""

    status_code = 500
    code = "internal_error"


class InferenceFailedError(ServiceError):
    """ONNX Runtime raised while running a batch; every request of that batch gets this."""

    status_code = 500
    code = "inference_failed"


# --- start-up -------------------------------------------------------------------------------------


class ModelLoadError(ServiceError):
    """A model file that is missing, unreadable or not a valid ONNX model."""

    status_code = 503
    code = "model_load_failed"
    exit_code = 2


class ProviderUnavailableError(ServiceError):
    """The requested execution provider (``--device cuda``) is not available here."""

    status_code = 503
    code = "provider_unavailable"
    exit_code = 2


class RayClusterUnreachableError(ServiceError):
    """``--ray-address`` names a Ray cluster that does not answer."""

    status_code = 503
    code = "ray_unreachable"
    exit_code = 2
