"""Parity check: ONNX Runtime against Keras on the same random inputs.

The error is :func:`models.comparison.relative_error` (normwise: ``max |onnx - keras| /
max |keras|``) per output and batch size, the largest over all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.errors import ParityError
from models.comparison import relative_error

DEFAULT_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2  # precision fp16: float16 weights and sums (measured errors: docs/export.md)
INT8_TOLERANCE = 0.05  # the int8 strategy: 8-bit weights and inputs (measured errors: docs/export.md)
DEFAULT_BATCH_SIZES = (1, 5)


def keras_outputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The Keras model's outputs at inference (``training=False``) as NumPy arrays."""
    import keras

    result = model(x, training=False)
    results = result if isinstance(result, (list, tuple)) else [result]
    return [np.asarray(keras.ops.convert_to_numpy(r)) for r in results]


def check_parity(model: Any, session: Any, input_name: str, input_shape: Sequence[int],
                 batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, tolerance: float = DEFAULT_TOLERANCE,
                 seed: int = 0) -> float:
    """Run Keras and an ORT ``session`` on random inputs; raise :class:`ParityError` over tolerance.

    Returns:
        The largest relative error seen.
    """
    rng = np.random.default_rng(seed)
    output_names = [o.name for o in session.get_outputs()]
    worst = 0.0
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        expected = keras_outputs(model, x)
        actual = session.run(None, {input_name: x})
        for name, a, e in zip(output_names, actual, expected, strict=True):
            if a.shape != e.shape:
                shapes = f"{name}' (shape {a.shape}, Keras {e.shape})"
                raise ParityError(float("inf"), tolerance, batch, shapes)
            error = relative_error(a, e)
            if not np.isfinite(error) or error > tolerance:
                raise ParityError(error, tolerance, batch, name)
            worst = max(worst, error)
    return worst
