"""Small ONNX models written with ``onnx.helper`` for the service tests (no TensorFlow).

``write_classifier`` builds ``input [N, *shape] -> Flatten -> MatMul -> Add -> Softmax`` with
random weights and the ``lc2d.*`` metadata of docs/model-format.md; ``with_metadata=False``
writes the same graph with no metadata at all. ``reference_predict`` is the independent NumPy
computation of the same function.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass(frozen=True)
class ClassifierWeights:
    """Weights of the test classifier, kept to compute the NumPy reference."""

    kernel: np.ndarray  # [features, classes]
    bias: np.ndarray  # [classes]


def write_classifier(path: Path, *, instance_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10,
                     seed: int = 0, with_metadata: bool = True, labels: list[str] | None = None,
                     name: str = "tiny") -> ClassifierWeights:
    """Writes a softmax classifier and returns its weights.

    Args:
        path: where to write the ``.onnx`` file (parents created).
        instance_shape: one instance's shape; the batch axis is dynamic.
        classes: number of output classes.
        seed: seed of the random weights.
        with_metadata: write the ``lc2d.*`` metadata properties.
        labels: class names for ``lc2d.labels``; defaults to ``"0"..`` when metadata is written.
        name: ``lc2d.model_name``.

    Returns:
        The weights, for :func:`reference_predict`.
    """
    rng = np.random.default_rng(seed)
    features = int(np.prod(instance_shape))
    weights = ClassifierWeights(kernel=rng.normal(0, 0.5, (features, classes)).astype(np.float32),
                                bias=rng.normal(0, 0.1, classes).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "kernel"], ["logits_nobias"]),
         helper.make_node("Add", ["logits_nobias", "bias"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *instance_shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights.kernel, "kernel"), numpy_helper.from_array(weights.bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        labels = labels if labels is not None else [str(i) for i in range(classes)]
        props = {"lc2d.format_version": "1", "lc2d.model_name": name, "lc2d.input_name": "input",
                 "lc2d.input_shape": json.dumps(list(instance_shape)), "lc2d.input_dtype": "float32",
                 "lc2d.data_format": "channels_last", "lc2d.output_names": json.dumps(["probabilities"]),
                 "lc2d.labels": json.dumps(labels), "lc2d.layers": "[]",
                 "lc2d.versions": json.dumps({"lc2d": "0.1.0"}), "lc2d.parity_max_rel_error": "null"}
        helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


def reference_predict(weights: ClassifierWeights, batch: np.ndarray) -> np.ndarray:
    """The classifier computed with NumPy in float64 (independent of ONNX Runtime)."""
    logits = batch.reshape(len(batch), -1).astype(np.float64) @ weights.kernel + weights.bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)
