"""``precision="fp16"``: float16 weights and compute, float32 at the file's boundary.

Tolerance: ``FP16_TOLERANCE`` (1e-2, normwise ``models.comparison.relative_error``) against
Keras in float32; float16 keeps 11 significant bits, so sums of a few hundred products land
near 1e-3 (measured errors in docs/export.md). The errors must also be above float32's ~1e-7,
or the graph was not computed in float16 at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from export.lowerings.registry import FLOAT_STRATEGIES
from lc2d.cli import main
from models.comparison import relative_error
from tests.export.onnx_checks import keras_predict, random_input, run_onnx
from tests.export.test_lowerings import lc_stack

FLOAT32_NOISE = 1e-6  # an fp32 export's error here is ~1e-7


def assert_float16_inside_float32_outside(path: Path) -> None:
    proto = onnx.load(str(path))
    graph = proto.graph
    boundary = [*graph.input, *graph.output]
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in boundary)
    float_types = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    floats = [i for i in graph.initializer if i.data_type in float_types]
    assert floats and all(i.data_type == onnx.TensorProto.FLOAT16 for i in floats)
    assert graph.node[0].op_type == "Cast" and graph.node[0].input[0] == graph.input[0].name
    casts_out = {n.output[0] for n in graph.node if n.op_type == "Cast"
                 and n.attribute[0].i == onnx.TensorProto.FLOAT}
    assert casts_out == {o.name for o in graph.output}
    assert {p.key: p.value for p in proto.metadata_props}["lc2d.precision"] == "fp16"


@pytest.mark.parametrize("strategy", FLOAT_STRATEGIES)
def test_fp16_export_runs_on_cpu_within_its_tolerance(strategy: str, tmp_path: Path,
                                                      export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from export.parity import FP16_TOLERANCE

    model = lc_stack(1, "channels_last")  # valid/same, strides 1 and 2, biases, tanh
    path = tmp_path / "fp16.onnx"
    report = to_onnx(model, path, ExportOptions(policy=strategy, precision="fp16"))
    assert report.precision == "fp16" and report.parity_max_rel_error is not None
    assert FLOAT32_NOISE < report.parity_max_rel_error < FP16_TOLERANCE
    onnx.checker.check_model(str(path), full_check=True)
    assert_float16_inside_float32_outside(path)
    x = random_input(export_rng, model, batch=4)
    (y,) = run_onnx(path, x)  # ONNX Runtime's CPU provider
    assert y.dtype == np.float32
    assert FLOAT32_NOISE < relative_error(y, keras_predict(model, x)) < FP16_TOLERANCE


def test_fp16_refuses_quantized_strategies(tmp_path: Path) -> None:
    from export import ExportError, ExportOptions, to_onnx

    with pytest.raises(ExportError, match=r"Precision fp16 needs float strategies.*\['int8'\]"):
        to_onnx(lc_stack(1, "channels_last"), tmp_path / "m.onnx",
                ExportOptions(policy="int8", precision="fp16"))


def test_fp16_refuses_weights_beyond_float16_range() -> None:
    from onnx import helper, numpy_helper

    from export import ExportError
    from export.precision import to_float16

    big = numpy_helper.from_array(np.array([1.0, 7e4], np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])], [big])
    expected = r"Weight 'w' has a value of magnitude 7e\+04\. Expected at most 65504"
    with pytest.raises(ExportError, match=expected):
        to_float16(helper.make_model(graph))


def test_cli_export_precision_fp16_with_chosen_outputs(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from models.builders import digits_classifier

    source = tmp_path / "digits.keras"
    digits_classifier(implementation=2).save(source)
    out = tmp_path / "digits_fp16.onnx"
    assert main(["export", str(source), "-o", str(out), "--precision", "fp16", "--outputs", "hidden"]) == 0
    assert "fp16" in capsys.readouterr().out
    assert_float16_inside_float32_outside(out)
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["hidden"]
    assert main(["export", str(source), "-o", str(out), "--precision", "bf16"]) == 2
    assert "--precision: expected one of 'fp32' or 'fp16', received 'bf16'" in capsys.readouterr().err


def test_fp16_export_is_served_like_fp32(tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from export.parity import FP16_TOLERANCE
    from service.runtime import load_model

    model = lc_stack(3, "channels_first")
    path = tmp_path / "fp16.onnx"
    to_onnx(model, path, ExportOptions(policy="chunked", precision="fp16"))  # a Scan body in fp16
    served = load_model(path, device="cpu")
    assert served.contract.dtype == "float32"
    assert served.contract.metadata["lc2d.precision"] == "fp16"
    x = random_input(export_rng, model, batch=3)
    (y,) = served.run(served.contract.validate_batch(x)).values()
    assert FLOAT32_NOISE < relative_error(y, keras_predict(model, x)) < FP16_TOLERANCE
