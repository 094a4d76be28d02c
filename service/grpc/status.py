"""How a :class:`~service.errors.ServiceError` reaches a gRPC client: one table, keyed by HTTP status.

Every error already carries its HTTP status (``status_code``); the gRPC code is derived from it
here, once, so an error class added anywhere in the service gets a gRPC code without a second
list. The status message is the error's message, word for word what HTTP sends in ``"error"``
(file paths cut to their last component, as HTTP cuts them); its stable ``code`` and, for a full
queue, ``retry-after`` travel as trailing metadata.
"""

from __future__ import annotations

import grpc

from service.api.bodies import without_paths
from service.errors import ServiceError

MAX_MESSAGE_CHARS = 4000
"""Longest status message sent. The message travels in a trailer, and a client refuses trailers
over 16 KiB (RESOURCE_EXHAUSTED, the real status lost): a message quoting a 20,000-character
model name a client sent is cut instead."""

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,    # malformed request
    404: grpc.StatusCode.NOT_FOUND,           # unknown model or version
    406: grpc.StatusCode.INVALID_ARGUMENT,    # (HTTP content negotiation; never from gRPC)
    408: grpc.StatusCode.DEADLINE_EXCEEDED,   # (HTTP read timeout; never from gRPC)
    409: grpc.StatusCode.FAILED_PRECONDITION,  # load/unload while the model control mode forbids it
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,  # larger than the body limit
    415: grpc.StatusCode.INVALID_ARGUMENT,    # (HTTP media type; never from gRPC)
    422: grpc.StatusCode.INVALID_ARGUMENT,    # breaks the model's input contract
    499: grpc.StatusCode.CANCELLED,           # the client went away before its answer
    503: grpc.StatusCode.UNAVAILABLE,         # not ready, draining, queue full: retry later
    504: grpc.StatusCode.DEADLINE_EXCEEDED,   # not answered within the request deadline
}
"""HTTP status of a :class:`ServiceError` -> gRPC status code; anything else is INTERNAL."""


def grpc_code(err: ServiceError) -> grpc.StatusCode:
    """The gRPC status code of a service error."""
    return GRPC_CODES.get(err.status_code, grpc.StatusCode.INTERNAL)


def status_message(err: ServiceError) -> str:
    """The status message of a service error: HTTP's ``"error"``, cut to :data:`MAX_MESSAGE_CHARS`."""
    return short_message(without_paths(err.message))


def short_message(message: str) -> str:
    """``message``, or its start and how much was cut when it is over :data:`MAX_MESSAGE_CHARS`."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    kept = MAX_MESSAGE_CHARS - 40
    return f"{message[:kept]}... ({len(message) - kept:,} characters cut)"


def trailing_metadata(err: ServiceError) -> tuple[tuple[str, str], ...]:
    """The error's stable code (``lc2d-error-code``) and its HTTP headers, lower-cased."""
    headers = tuple((name.lower(), value) for name, value in err.headers.items())
    return (("lc2d-error-code", err.code), *headers)
