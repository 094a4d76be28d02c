"""Every malformed body of issue 15 gets a JSON 4xx (never a 500), through the app in process.

Each case is a body that once crashed the server (plain-text 500) or was silently misread; the
assertion is the status, the stable ``code`` and a message that names what was expected.
"""

import io
import json
import struct
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServeSettings

JSON = {"content-type": "application/json"}
NPY = {"content-type": "application/x-npy"}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module")
def client(tiny_model) -> Iterator[TestClient]:
    settings = ServeSettings(model=[tiny_model.path], max_batch_size=8, device="cpu", threads=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def npy_header(header: str, version: tuple[int, int] = (1, 0)) -> bytes:
    """An ``.npy`` preamble with any header text (np.save would refuse to write the bad ones)."""
    encoded = header.encode("utf8" if version[0] == 3 else "latin1") + b"\n"
    length = struct.pack("<H" if version[0] == 1 else "<I", len(encoded))
    return b"\x93NUMPY" + bytes(version) + length + encoded


def saved(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    if version is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array(buffer, array, version=version)
    return buffer.getvalue()


def instance() -> list:
    return np.ones((8, 8, 1)).tolist()


def v2(tensor: dict, **request: object) -> dict:
    base = {"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0.5] * 64}
    return {"inputs": [{**base, **tensor}], **request}


DEEP = b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}"
BIG_INT = json.dumps({"instances": [instance()]}).replace("1.0", "1" + "0" * 5000, 1).encode()
PREDICT_JSON_CASES = [
    pytest.param(DEEP, 400, "nested deeper than 1024 levels", id="json-nested-5000-deep"),
    pytest.param(BIG_INT, 422, "expected finite values", id="integer-of-5000-digits"),
    pytest.param(json.dumps({"instances": [{"input": instance()}, 3]}).encode(), 400,
                 "instance 1 is int, expected an object", id="named-then-scalar"),
    pytest.param(json.dumps({"instances": [{"input": instance()}, None]}).encode(), 400,
                 "instance 1 is NoneType", id="named-then-null"),
    pytest.param(json.dumps({"instances": [instance(), {"input": instance()}]}).encode(), 400,
                 "instance 0 is list", id="list-then-named"),
    pytest.param(json.dumps({"instances": [[[[0.5]] * 8] * 7 + [[[True]] * 8]]}).encode(), 422,
                 "boolean", id="one-true-among-numbers"),
    pytest.param(json.dumps({"instances": [instance()]}).replace("1.0", "1e400", 1).encode(), 422,
                 "expected finite values", id="float-overflow"),
    pytest.param(b'{"instances": 7}', 422, "expected a list of instances", id="instances-scalar"),
    pytest.param(b"\xff\xfe{", 400, "not valid JSON", id="not-utf8"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), PREDICT_JSON_CASES)
def test_predict_malformed_json_answers_json_4xx(client, body, status, fragment) -> None:
    answer = client.post("/predict", content=body, headers=JSON)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]


NPY_CASES = [
    pytest.param(npy_header("{'descr': '<f4', 'fortran_order': True, 'shape': (100000, 100000, 8), }"),
                 400, "(320000000000 bytes), but only 0 data bytes", id="fortran-claims-298-GiB"),
    pytest.param(npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (9000000000, 8, 8, 1), }",
                            (2, 0)), 400, "but only 0 data bytes", id="v2-claims-2-TiB"),
    pytest.param(npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**40}, {2**40}), }}",
                            (3, 0)),
                 400, "data bytes", id="v3-shape-overflows-int64"),
    pytest.param(npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': (0, {2**62}, {2**62}), }}"),
                 400, "cannot be built", id="zero-size-huge-dims"),
    pytest.param(npy_header("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }") + b"\x00" * 8,
                 422, "pickled", id="object-dtype"),
    pytest.param(npy_header("{'descr': '<f4', 'fortran_order': 1, 'shape': (1,), }"), 400,
                 "fortran_order must be", id="fortran-order-not-bool"),
    pytest.param(npy_header("{'descr': '<f4', 'shape': (1,), }"), 400, "exactly the keys", id="missing-key"),
    pytest.param(npy_header("__import__('os')"), 400, "not a Python dict literal", id="code-in-header"),
    pytest.param(b"\x93NUMPY\x04\x00" + b"\x00" * 20, 400, "format version (4, 0)", id="format-4"),
    pytest.param(b"\x93NUMPY\x02\x00\xff\xff\xff\xff", 400, "header claims 4294967295 bytes",
                 id="header-length-4GiB"),
    pytest.param(b"\x80\x04\x95garbage", 400, "not a .npy file", id="pickle"),
    pytest.param(b"PK\x03\x04" + b"\x00" * 40, 400, ".npz archive", id="npz-as-npy"),
    pytest.param(b"", 400, "not a .npy file", id="empty"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), NPY_CASES)
def test_predict_malformed_npy_answers_json_4xx(client, body, status, fragment) -> None:
    answer = client.post("/predict", content=body, headers=NPY)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]


def test_predict_real_npz_says_it_is_an_npz(client) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.ones((1, 8, 8, 1), np.float32))
    answer = client.post("/predict", content=buffer.getvalue(), headers=NPY)
    assert answer.status_code == 400 and ".npz archive" in answer.json()["error"]


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_predict_npy_of_every_format_and_order_answers_like_c_order(client, tiny_model, rng, version,
                                                                    order) -> None:
    batch = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
    body = saved(np.asarray(batch, order=order), version)
    answer = client.post("/predict", content=body, headers=NPY)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], tiny_model.reference(batch), **TOLERANCE)


V2_CASES = [
    pytest.param(v2({"shape": [2**40, 2**40, 2**40, 1]}), 422, f"expected {2**120}",
                 id="shape-product-overflows-int64"),
    pytest.param(v2({"shape": [1, 8, True, 8]}), 422, "boolean", id="shape-holds-a-boolean"),
    pytest.param(v2({"shape": [1, 8, 8, -1]}), 400, "non-negative integers", id="shape-negative"),
    pytest.param(v2({"shape": [0, 2**62, 2**62, 1], "data": []}), 422, "cannot be built",
                 id="zero-size-huge-dims"),
    pytest.param(v2({"parameters": ["binary_data_size"]}), 400, "parameters of the input to be an object",
                 id="tensor-parameters-list"),
    pytest.param(v2({"parameters": "binary_data_size"}), 400, "parameters of the input to be an object",
                 id="tensor-parameters-string"),
    pytest.param(v2({}, parameters=[1]), 400, "parameters of the request to be an object",
                 id="request-parameters-list"),
    pytest.param(v2({}, parameters={"binary_data_output": "yes"}), 400, "true or false",
                 id="binary-data-output-string"),
    pytest.param(v2({}, outputs=[{"name": "probabilities", "parameters": 3}]), 400,
                 "parameters of output 'probabilities'", id="output-parameters-int"),
    pytest.param(v2({}, outputs=[{"name": ["probabilities"]}]), 400, "unknown outputs",
                 id="output-name-list"),
    pytest.param(v2({"datatype": ["FP32"]}), 422, "cannot become FP32", id="datatype-list"),
    pytest.param(v2({"data": [0.5] * 63 + [True]}), 422, "boolean", id="one-true-among-numbers"),
    pytest.param(v2({"parameters": {"binary_data_size": True}}), 400, "binary_data_size True",
                 id="binary-size-boolean"),
    pytest.param(v2({}, id={"a": 1}), 400, "request id to be a string", id="id-object"),
    pytest.param(v2({"datatype": "INT8", "data": [1000] * 64}), 422, "must lie in [-128, 127], received 1000",
                 id="int8-out-of-range"),
    pytest.param(v2({"datatype": "UINT8", "data": [-1] * 64}), 422, "must lie in [0, 255], received -1",
                 id="uint8-negative"),
    pytest.param({"inputs": [7]}, 400, "exactly one input named", id="input-not-object"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), V2_CASES)
def test_v2_infer_malformed_requests_answer_json_4xx(client, body, status, fragment) -> None:
    answer = client.post("/v2/models/tiny/infer", content=json.dumps(body), headers=JSON)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]


@pytest.mark.parametrize("value", ["١٢", "²", "12 ", "-1", "0x10", "1" * 30])
def test_v2_infer_non_ascii_or_odd_header_length_answers_400(client, value) -> None:
    body = json.dumps(v2({})).encode()
    answer = client.post("/v2/models/tiny/infer", content=body,
                         headers={"Inference-Header-Content-Length": value.encode("utf8")})
    if value == "12 ":  # surrounding spaces are not part of a header value
        assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]
    else:
        assert answer.status_code == 400, answer.text
        assert "Inference-Header-Content-Length must be" in answer.json()["error"]


def test_v2_infer_with_both_data_and_binary_data_answers_400(client) -> None:
    """Which values would run? Neither: refused, as gRPC refuses raw and typed contents together."""
    header = json.dumps(v2({"parameters": {"binary_data_size": 256}})).encode()
    answer = client.post("/v2/models/tiny/infer", content=header + np.ones(64, "<f4").tobytes(),
                         headers={"Content-Type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(header))})
    assert answer.status_code == 400, answer.text
    assert 'both "data" and parameters.binary_data_size' in answer.json()["error"]


def test_predict_without_content_type_reads_json_as_tensorflow_serving_does(client, tiny_model) -> None:
    answer = client.post("/predict", content=json.dumps({"instances": [instance()]}))
    assert answer.status_code == 200, answer.text  # the CSRF weighing: service/api/bodies.py
    expected = tiny_model.reference(np.asarray([instance()], np.float32))
    np.testing.assert_allclose(answer.json()["predictions"], expected, **TOLERANCE)


def test_v2_infer_without_content_type_reads_json_as_tritonclient_sends_it(client, tiny_model) -> None:
    answer = client.post("/v2/models/tiny/infer", content=json.dumps(v2({})))
    assert answer.status_code == 200, answer.text
    expected = tiny_model.reference(np.full((1, 8, 8, 1), 0.5, np.float32))
    np.testing.assert_allclose(answer.json()["outputs"][0]["data"], expected.ravel(), **TOLERANCE)


def test_json_has_its_own_smaller_limit(tiny_model) -> None:
    settings = ServeSettings(model=[tiny_model.path], max_json_bytes=1000, device="cpu", threads=1)
    with TestClient(create_app(settings)) as small:
        big = small.post("/predict", content=json.dumps({"instances": [instance()] * 3}), headers=JSON)
        assert big.status_code == 413 and "expected at most 1000" in big.json()["error"]
        as_npy = small.post("/predict", content=saved(np.ones((3, 8, 8, 1), np.float32)), headers=NPY)
        assert as_npy.status_code == 200, as_npy.text
