"""The exported file's contract with the server (docs/model-format.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from tests.export.onnx_checks import run_onnx


def test_export_metadata_describes_model_without_keras(tmp_path: Path) -> None:
    import keras

    from export import to_onnx
    from models.builders import digits_classifier

    model = digits_classifier(implementation=3, labels=[str(i) for i in range(10)])
    path = tmp_path / "digits.onnx"
    report = to_onnx(model, path)
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}

    assert meta["lc2d.format_version"] == "1"
    assert meta["lc2d.model_name"] == "digits"
    assert meta["lc2d.input_name"] == "input" == proto.graph.input[0].name
    assert json.loads(meta["lc2d.input_shape"]) == [8, 8, 1]
    assert meta["lc2d.input_dtype"] == "float32"
    assert meta["lc2d.data_format"] == "channels_last"
    assert json.loads(meta["lc2d.output_names"]) == [o.name for o in proto.graph.output] == ["probabilities"]
    assert json.loads(meta["lc2d.labels"]) == [str(i) for i in range(10)]
    layers = json.loads(meta["lc2d.layers"])
    assert layers == [{"name": "local", "implementation": 3, "lowering": "sparse",
                       "nodes": layers[0]["nodes"]}]
    versions = json.loads(meta["lc2d.versions"])
    assert versions["keras"] == keras.__version__ and versions["onnx"] == onnx.__version__
    assert {"lc2d-serve", "onnxruntime", "tensorflow", "numpy", "python"} <= set(versions)
    parity = float(meta["lc2d.parity_max_rel_error"])
    assert 0 <= parity < 1e-4 and parity == float(f"{report.parity_max_rel_error:.3e}")
    assert meta["lc2d.lowering_requested"] == "implementation" and meta["lc2d.opset"] == "20"


def test_export_graph_is_standard_with_dynamic_batch(tmp_path: Path) -> None:
    from export import to_onnx
    from models.builders import digits_classifier

    path = tmp_path / "digits.onnx"
    to_onnx(digits_classifier(implementation=1), path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 20)]
    assert {n.domain for n in proto.graph.node} == {""}
    assert len(proto.graph.input) == 1
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [8, 8, 1]
    for batch in (1, 6):
        (probabilities,) = run_onnx(path, np.random.default_rng(batch).random((batch, 8, 8, 1), np.float32))
        assert probabilities.shape == (batch, 10)


def test_export_without_check_records_null_parity(tmp_path: Path) -> None:
    from export import ExportOptions, to_onnx
    from models.builders import seed_example

    path = tmp_path / "seed.onnx"
    report = to_onnx(seed_example(), path, ExportOptions(check=False))
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert report.parity_max_rel_error is None and meta["lc2d.parity_max_rel_error"] == "null"
