"""Tiny ONNX models for the scoring tests, written with ``onnx.helper`` (no TensorFlow).

``write_softmax_model`` builds ``input [N, *shape] -> Flatten -> MatMul -> Add -> Softmax`` with
random weights, a second output ``logits``, and the ``lc2d.*`` metadata of docs/model-format.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def write_softmax_model(path: Path, *, instance_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10,
                        seed: int = 0, data_format: str = "channels_last",
                        extra_metadata: dict[str, str] | None = None) -> Path:
    """Writes the classifier to ``path`` and returns the path."""
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
    props = {"lc2d.format_version": "1", "lc2d.model_name": "scoring_test", "lc2d.input_name": "input",
             "lc2d.input_shape": json.dumps(list(instance_shape)), "lc2d.input_dtype": "float32",
             "lc2d.data_format": data_format,
             "lc2d.output_names": json.dumps(["probabilities", "logits"]),
             "lc2d.labels": json.dumps([str(i) for i in range(classes)]), "lc2d.layers": "[]",
             "lc2d.versions": json.dumps({"lc2d": "0.1.0"}), "lc2d.parity_max_rel_error": "null",
             **(extra_metadata or {})}
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
