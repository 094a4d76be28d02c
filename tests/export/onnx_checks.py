"""Checks shared by the export tests: run an ONNX file in ONNX Runtime and compare with Keras."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Tolerance of every ONNX-vs-Keras comparison here: float32 sums of at most a few hundred terms.
RTOL = 1e-4


def run_onnx(path: Path | str, x: np.ndarray) -> list[np.ndarray]:
    """All outputs of the ONNX file at ``path`` on ``x`` (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def keras_predict(model: Any, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def assert_matches_keras(model: Any, path: Path | str, x: np.ndarray, rtol: float = RTOL) -> None:
    """ONNX Runtime's output on ``x`` equals Keras's within ``rtol`` of the output's scale."""
    expected = keras_predict(model, x)
    (actual,) = run_onnx(path, x)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected)))
    assert scale > 0, "a zero output would make the comparison vacuous"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def random_input(rng: np.random.Generator, model: Any, batch: int = 3) -> np.ndarray:
    """Standard-normal float32 inputs for ``model`` (never zeros)."""
    return rng.standard_normal((batch, *model.input_shape[1:])).astype(np.float32)
