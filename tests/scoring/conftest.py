"""Fixtures of the scoring tests: tiny ONNX models (``onnx.helper``), random inputs.

The model is ``input [N, *shape] -> Flatten -> MatMul -> Add -> Softmax`` with random weights,
two outputs (``probabilities`` then ``logits``) and the ``lc2d.*`` metadata of
docs/model-format.md; :class:`SoftmaxModel` keeps the weights for a NumPy reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.model_format import build_metadata


@dataclass(frozen=True)
class SoftmaxModel:
    """A written test model and its weights."""

    path: Path
    kernel: np.ndarray  # [features, classes]
    bias: np.ndarray  # [classes]

    def reference(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities computed with NumPy in float64 (independent of ONNX Runtime)."""
        logits = batch.reshape(len(batch), -1).astype(np.float64) @ self.kernel + self.bias
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)


def write_softmax_model(path: Path, *, instance_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10,
                        seed: int = 0, data_format: str = "channels_last",
                        extra_metadata: dict[str, str] | None = None) -> SoftmaxModel:
    """Writes the classifier to ``path``."""
    rng = np.random.default_rng(seed)
    features = int(np.prod(instance_shape))
    kernel = rng.normal(0, 0.5, (features, classes)).astype(np.float32)
    bias = rng.normal(0, 0.1, classes).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "kernel"], ["product"]),
         helper.make_node("Add", ["product", "bias"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "scoring_test",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *instance_shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(kernel, "kernel"), numpy_helper.from_array(bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, build_metadata(
        model_name="scoring_test", input_name="input", input_shape=instance_shape,
        output_names=["probabilities", "logits"], data_format=data_format,
        labels=[str(i) for i in range(classes)], versions={"lc2d-serve": "0.1.0"}, extra=extra_metadata))
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return SoftmaxModel(path=path, kernel=kernel, bias=bias)


@pytest.fixture(scope="session")
def model_writer() -> Callable[..., SoftmaxModel]:
    """``write_softmax_model`` for tests that need another shape or metadata."""
    return write_softmax_model


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> SoftmaxModel:
    """An ``[8, 8, 1]`` -> 10 classes model, like the digits classifier."""
    return write_softmax_model(tmp_path_factory.mktemp("models") / "digits.onnx")


def direct_ort_batches(model_path: Path, x: np.ndarray, batch_size: int,
                       output: str = "probabilities") -> np.ndarray:
    """The reference run: a bare ONNX Runtime session over the same batches."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = x.astype(np.float32)
    parts = [session.run([output], {"input": x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(parts)


@pytest.fixture(scope="session")
def direct_ort() -> Callable[..., np.ndarray]:
    """:func:`direct_ort_batches`."""
    return direct_ort_batches
