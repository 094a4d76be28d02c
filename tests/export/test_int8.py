"""The opt-in ``int8`` lowering: within its tolerance of Keras, batch-independent, exact where it must be.

Tolerances: ``INT8_TOLERANCE`` (5 %) normwise for the parity check; measured here about 1 % for
standard-normal inputs and weights, because 8-bit weights (per location and filter) and 8-bit
inputs (per instance) each round to half a step of 1/127 and 1/255 of their range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from models.comparison import relative_error
from tests.export.onnx_checks import keras_predict, random_input, run_onnx
from tests.export.test_lowerings import lc_stack

MEASURED_INT8_ERROR = 0.03  # normwise; about 0.01 seen on these models, the check allows 0.05


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("implementation", [1, 2, 3])
def test_int8_lc_stack_is_close_to_keras_and_each_answer_is_independent_of_its_batch(
        implementation: int, data_format: str, tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from export.parity import INT8_TOLERANCE

    model = lc_stack(implementation, data_format)  # valid/same, strides 1 and 2, biases, tanh
    path = tmp_path / "int8.onnx"
    report = to_onnx(model, path, ExportOptions(policy="int8"))
    assert [layer["lowering"] for layer in report.layers] == ["int8"] * 4
    assert report.parity_max_rel_error is not None and 0 < report.parity_max_rel_error < INT8_TOLERANCE
    onnx.checker.check_model(str(path), full_check=True)
    assert {node.domain for node in onnx.load(str(path)).graph.node} <= {""}  # standard ONNX only
    spread = np.array([1, 10, 0.1, 1, 3, 1], np.float32).reshape(-1, 1, 1, 1)  # unlike ranges
    x = random_input(export_rng, model, batch=6) * spread
    (together,) = run_onnx(path, x)
    assert relative_error(together, keras_predict(model, x)) < MEASURED_INT8_ERROR
    alone = np.concatenate([run_onnx(path, x[i:i + 1])[0] for i in range(len(x))])
    np.testing.assert_array_equal(alone, together)  # per-instance scales: batch-mates change nothing


def test_int8_all_zero_instance_gives_exactly_the_bias(tmp_path: Path,
                                                        export_rng: np.random.Generator) -> None:
    import keras

    from export import ExportOptions, to_onnx
    from models.locally_connected import LocallyConnected2D

    layer = LocallyConnected2D(4, 3, padding="same", bias_initializer="random_normal", name="lc")
    model = keras.Sequential([keras.Input((6, 5, 2)), layer])
    path = tmp_path / "int8.onnx"
    to_onnx(model, path, ExportOptions(policy="int8"))
    x = np.concatenate([np.zeros((1, 6, 5, 2), np.float32), random_input(export_rng, model, batch=1)])
    (y,) = run_onnx(path, x)
    np.testing.assert_array_equal(y[0], keras_predict(model, x[:1])[0])  # zero inputs: the bias, exactly
    assert relative_error(y[1:], keras_predict(model, x[1:])) < MEASURED_INT8_ERROR


def test_quantize_kernel_rounds_each_row_to_half_a_step(export_rng: np.random.Generator) -> None:
    from export.lowerings.int8 import WEIGHT_ZERO_POINT, quantize_kernel

    magnitudes = np.array([1e-3, 1, 50], np.float32)[:, None]
    kernel = export_rng.standard_normal((5, 3, 7)).astype(np.float32) * magnitudes
    kernel[2, 1] = 0.0  # a zero row gets scale 1 and codes of zero
    q, scale = quantize_kernel(kernel)
    assert q.dtype == np.uint8 and scale.shape == (5, 3)
    codes = q.astype(np.int32) - WEIGHT_ZERO_POINT
    assert codes.min() >= -127 and codes.max() <= 127
    assert np.all(np.abs(codes).max(axis=-1)[scale != 1] == 127)  # each row uses its whole range
    np.testing.assert_array_equal(codes[2, 1], 0)
    assert np.all(np.abs(codes * scale[..., None] - kernel) <= scale[..., None] / 2 + 1e-7)


def test_auto_never_chooses_int8() -> None:
    from export.lowerings import FLOAT_STRATEGIES, QUANTIZED_STRATEGIES, STRATEGIES, auto_candidates
    from export.lowerings.base import LoweringContext
    from models.locally_connected import LocallyConnected2D

    layer = LocallyConnected2D(2, 3, name="lc")
    layer.build((None, 5, 5, 1))
    assert "int8" in QUANTIZED_STRATEGIES and STRATEGIES["int8"].quantized
    assert auto_candidates(layer, LoweringContext()) == list(FLOAT_STRATEGIES)
    assert "int8" not in FLOAT_STRATEGIES
