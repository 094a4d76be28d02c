"""The one numerical comparison of this project: a normwise relative error.

Every check of one computation against another (export parity, legacy import against tf_keras,
benchmark errors, accuracy scripts) uses :func:`relative_error`, so "1e-4 relative" means the
same thing everywhere. Element-wise relative error is meaningless where the reference is ~0;
the normwise form divides by the reference's largest magnitude instead.
"""

from __future__ import annotations

import numpy as np


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max |actual - expected| / max |expected|``, in float64.

    Zero handling: when ``expected`` is all zeros (or empty) the scale is 1, so the result is
    the absolute error ``max |actual|`` (0 when both are all zeros). A NaN or infinity in either
    array gives a non-finite result, which every tolerance check treats as a failure.

    Raises:
        ValueError: the shapes differ (a comparison that broadcasts would hide a bug).
    """
    actual64, expected64 = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if actual64.shape != expected64.shape:
        raise ValueError(f"Expected arrays of the same shape. Received: actual {actual64.shape}, "
                         f"expected {expected64.shape}")
    if not (np.all(np.isfinite(actual64)) and np.all(np.isfinite(expected64))):
        return float("nan")
    scale = float(np.max(np.abs(expected64), initial=0.0)) or 1.0
    return float(np.max(np.abs(actual64 - expected64), initial=0.0)) / scale
