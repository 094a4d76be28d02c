"""The lc2d.* metadata format module: what the builder writes is what the server reads."""

from __future__ import annotations

import json

import pytest

from service.contract import InputContract, TensorSpec
from service.errors import ModelLoadError
from service.model_format import FORMAT_VERSION, Key, MetadataFormatError, build_metadata, read_json

INPUT = TensorSpec("input", (None, None, 3))
OUTPUT = TensorSpec("embedding", (16,))


def test_built_metadata_is_read_back_into_the_contract() -> None:
    props = build_metadata(model_name="faces", input_name="input", input_shape=(4, 5, 3),
                           output_names=["embedding"], data_format="channels_last", labels=None,
                           layers=[{"name": "L4", "implementation": 3, "lowering": "local", "nodes": 8}],
                           versions={"lc2d-serve": "0.1.0"}, parity_max_rel_error=3.14159e-7,
                           lowering_requested="auto", opset=20, precision="fp16")
    assert all(isinstance(v, str) for v in props.values()) and set(props) >= {
        Key.FORMAT_VERSION, Key.INPUT_SHAPE, Key.LAYERS, Key.PRECISION}
    assert props[Key.FORMAT_VERSION] == FORMAT_VERSION and props[Key.PARITY_MAX_REL_ERROR] == "3.142e-07"
    assert Key.LABELS not in props and json.loads(props[Key.LAYERS])[0]["lowering"] == "local"
    contract = InputContract.from_onnx(props, [INPUT], [OUTPUT])
    assert contract.instance_shape == (4, 5, 3) and contract.output_names == ("embedding",)
    assert contract.model_name == "faces" and contract.labels is None


def test_unchecked_parity_is_written_as_null() -> None:
    props = build_metadata(model_name="m", input_name="input", input_shape=(2,), output_names=["y"])
    assert read_json(props, Key.PARITY_MAX_REL_ERROR, "absent") is None


def test_read_json_names_the_key_of_a_malformed_value() -> None:
    with pytest.raises(MetadataFormatError, match="lc2d.labels is not valid JSON"):
        read_json({Key.LABELS: "[1, "}, Key.LABELS)
    assert read_json({}, Key.LABELS, "absent") == "absent"


def test_contract_refuses_an_unknown_format_version() -> None:
    props = build_metadata(model_name="m", input_name="input", input_shape=(4, 5, 3), output_names=["y"])
    with pytest.raises(ModelLoadError, match=r"format_version is '2'; expected '1'"):
        InputContract.from_onnx({**props, Key.FORMAT_VERSION: "2"}, [INPUT], [OUTPUT])


def test_format_module_and_cli_parser_import_nothing_heavy() -> None:
    import subprocess
    import sys

    # export/ imports the format module, so it must not pull in the server (FastAPI) or numpy;
    # building lc2d's parser (export's generated options included) must not load TensorFlow.
    code = ("import sys, service.model_format; light = sorted(sys.modules); "
            "from lc2d.cli import build_parser; build_parser(); "
            "print([m for m in ('fastapi', 'numpy', 'onnxruntime') if m in light], "
            "[m for m in ('tensorflow', 'keras', 'onnx') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120)
    assert done.stdout.strip() == "[] []", done.stdout + done.stderr
