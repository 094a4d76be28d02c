"""What an export refuses, and how it says so."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest


def test_export_unsupported_layers_are_listed_together(tmp_path: Path) -> None:
    import keras

    from export import UnsupportedLayersError, to_onnx

    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.UpSampling2D(name="up"),
        keras.layers.Conv2D(3, 3, name="conv"),
        keras.layers.Conv2DTranspose(2, 3, name="deconv"),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation="hard_shrink", name="odd_dense"),
    ])
    with pytest.raises(UnsupportedLayersError) as caught:
        to_onnx(model, tmp_path / "m.onnx")
    message = str(caught.value)
    assert "Cannot export 3 layer(s)" in message
    for name, kind in (("up", "UpSampling2D"), ("deconv", "Conv2DTranspose"), ("odd_dense", "Dense")):
        assert f"{name} ({kind})" in message
    assert "hard_shrink" in message and "- conv (" not in message
    assert not (tmp_path / "m.onnx").exists()


def test_dense_lowering_over_budget_is_refused_up_front(tmp_path: Path) -> None:
    from export import DenseKernelTooLargeError, ExportOptions, to_onnx
    from models.builders import seed_example

    with pytest.raises(DenseKernelTooLargeError) as caught:
        to_onnx(seed_example(), tmp_path / "m.onnx", ExportOptions(policy="dense"))
    message = str(caught.value)
    assert "'lc2'" in message and "5.38 GiB" in message and "'local' or 'sparse'" in message
    assert not (tmp_path / "m.onnx").exists()


def test_deepface_l4_dense_kernel_size_is_named() -> None:
    from export.errors import DenseKernelTooLargeError
    from export.lowerings.base import LoweringContext
    from export.lowerings.dense import dense_budget_error
    from models.geometry import LocalGeometry

    # DeepFace's L4 at 152×152×3: 63×63×16 in, 9×9 window, 16 filters (no weights needed).
    geo = LocalGeometry(63, 63, 16, 16, (9, 9), (1, 1), "valid", "channels_last")
    refusal = dense_budget_error(SimpleNamespace(name="L4", geometry=geo), LoweringContext())
    assert isinstance(refusal, DenseKernelTooLargeError)
    assert re.search(r"'L4'.*11\.45 GiB.*'local' or 'sparse'", str(refusal))


def test_export_parity_failure_is_reported(tmp_path: Path) -> None:
    from export import ExportOptions, ParityError, to_onnx
    from models.builders import seed_example

    # Float32 sums in another order differ at ~1e-7; a 1e-15 tolerance must catch that.
    with pytest.raises(ParityError, match=r"Parity check failed on output 'lc2'.*Expected at most 1e-15"):
        to_onnx(seed_example(), tmp_path / "m.onnx", ExportOptions(tolerance=1e-15))


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"policy": "fastest"}, r"Expected one of \['implementation', 'local'"),
    ({"opset": 16}, "greater than or equal to 17"),
    ({"opset": 10_000}, "Expected an integer from 17 to"),
    ({"dense_budget_bytes": 0}, "dense_budget_bytes\n  Input should be greater than 0"),
    ({"parity_batch_sizes": ()}, "at least 1 item"),
    ({"parity_batch_sizes": (1, 0)}, "greater than 0"),
    ({"precision": "bf16"}, "Input should be 'fp32' or 'fp16'"),
    ({"provider": "NoSuchExecutionProvider"}, "is not available"),
])
def test_export_bad_arguments_raise_value_error(kwargs: dict[str, object], expected: str,
                                                tmp_path: Path) -> None:
    from export import ExportOptions, to_onnx
    from models.builders import digits_classifier

    with pytest.raises(ValueError, match=expected):
        to_onnx(digits_classifier(), tmp_path / "m.onnx", ExportOptions(**kwargs))


def test_export_rejects_non_keras_model(tmp_path: Path) -> None:
    from export import ExportError, to_onnx

    with pytest.raises(ExportError, match="Expected a built Sequential or functional keras.Model"):
        to_onnx(object(), tmp_path / "m.onnx")
