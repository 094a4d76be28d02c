"""The classification extension of the Open Inference Protocol: top-k classes as strings.

A client that asks for an output with ``parameters.classification = k`` gets, instead of the
scores, a ``BYTES`` tensor ``[N, k]`` whose elements are ``"score:index"`` or, when the model
has labels, ``"score:index:label"``, highest score first, as Triton answers. Scores are written
in the shortest form that reads back as the same float32. Both front doors (v2 HTTP and gRPC)
use :func:`top_classes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.errors import MalformedRequestError

PARAMETER = "classification"


def class_count(parameters: dict[str, Any], output: str) -> int | None:
    """The ``classification`` parameter of a requested output: k >= 1, or None when absent.

    Raises:
        MalformedRequestError: k is not a positive integer (400).
    """
    value = parameters.get(PARAMETER)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedRequestError(
            f"parameters.classification of output {output!r} must be a positive integer (the number "
            f"of classes to return), received {value!r}", expected="integer >= 1", received=repr(value))
    return value


def top_classes(scores: np.ndarray, k: int, labels: Sequence[str] | None, output: str) -> np.ndarray:
    """The ``k`` highest classes of each row as ``b"score:index[:label]"``.

    Args:
        scores: ``[N, classes]`` output of one request.
        k: classes per row; more than there are returns them all.
        labels: class names, used when there is one per class.
        output: the output's name, for the error message.

    Returns:
        An object array ``[N, min(k, classes)]`` of bytes.

    Raises:
        MalformedRequestError: the output is not ``[N, classes]`` (400).
    """
    if scores.ndim != 2:
        raise MalformedRequestError(
            f"output {output!r} has shape {list(scores.shape)}; classification needs one score per class, "
            f"shape [N, classes]", expected="[N, classes]", received=list(scores.shape))
    k = min(k, scores.shape[1])
    names = labels if labels is not None and len(labels) == scores.shape[1] else None
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    rows = []
    for row, indices in zip(scores, order, strict=True):
        rows.append([_entry(row[i], int(i), names) for i in indices])
    return np.array(rows, dtype=object).reshape(len(scores), k)


def _entry(score: Any, index: int, labels: Sequence[str] | None) -> bytes:
    text = f"{np.format_float_positional(np.float32(score), trim='-')}:{index}"
    return (text if labels is None else f"{text}:{labels[index]}").encode()
