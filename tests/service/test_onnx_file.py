"""Reading an .onnx file's contract without onnx or ONNX Runtime gives the session's contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.contract import InputContract
from service.errors import ModelLoadError
from service.onnx_file import read_signature
from tests.service.conftest import write_classifier


def session_contract(path: Path) -> InputContract:
    return InputContract.from_session(onnxruntime.InferenceSession(str(path)))


@pytest.mark.parametrize("with_metadata", [True, False])
def test_contract_from_file_equals_contract_from_session(tmp_path: Path, with_metadata: bool) -> None:
    path = tmp_path / "m.onnx"
    write_classifier(path, instance_shape=(5, 4, 3), classes=7, with_metadata=with_metadata,
                     labels=["é", "b", "c", "d", "e", "f", "g"] if with_metadata else None)
    assert InputContract.from_file(path) == session_contract(path)


def test_initializers_listed_as_graph_inputs_are_not_inputs(tmp_path: Path) -> None:
    # IR version 3 files list their weights among the graph inputs; ONNX Runtime does not count them
    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["n", 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.save(model, str(tmp_path / "m.onnx"))
    signature = read_signature(tmp_path / "m.onnx")
    assert [v.name for v in signature.inputs] == ["x"] and signature.inputs[0].shape == (None, 4)
    assert signature.outputs[0].dtype == "float64" and signature.outputs[0].shape == (None, 2)


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", b"\x0a\xff\xff\xff\x0f"])
def test_files_that_are_not_onnx_raise_model_load_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.onnx").write_bytes(content)
    with pytest.raises(ModelLoadError, match="bad.onnx"):
        InputContract.from_file(tmp_path / "bad.onnx")
    with pytest.raises(ModelLoadError, match="does not exist"):
        InputContract.from_file(tmp_path / "absent.onnx")
