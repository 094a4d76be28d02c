"""Hypothesis-generated malformed bodies: JSON, ``.npy`` and v2 binary, on every inference route.

Every example must get a JSON answer below 500, and the same keep-alive connection must then
answer a valid request correctly (see ``conftest.FuzzClient``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ_SETTINGS, INSTANCE_SHAPE, FuzzClient
from tests.fuzz.strategies import encode, json_values, mutated, npy_bodies, predict_payloads

JSON: dict[str, str | bytes] = {"Content-Type": "application/json"}
NPY: dict[str, str | bytes] = {"Content-Type": "application/x-npy"}
PREDICT_PATHS = ["/predict", "/v1/models/tiny:predict", "/v1/models/tiny/versions/1:predict",
                 "/v1/models/nope:predict", "/v1/models/tiny/versions/x:predict"]
# What a header value may hold (RFC 9110: visible characters, spaces, obs-text); the HTTP parser
# refuses the rest before the app sees the request (tests/service/test_connections.py).
HEADER_CHARACTERS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
INFER_PATHS = ["/v2/models/tiny/infer", "/v2/models/tiny/versions/1/infer", "/v2/models/nope/infer"]


@FUZZ_SETTINGS
@given(path=st.sampled_from(PREDICT_PATHS),
       body=predict_payloads(INSTANCE_SHAPE).map(encode).flatmap(mutated),
       content_type=st.sampled_from([JSON, {}, {"Content-Type": "text/plain"},
                                     {"Content-Type": "application/json; x"}]))
def test_predict_json_bodies_never_get_a_server_error(fuzz_client: FuzzClient, path, body,
                                                      content_type) -> None:
    fuzz_client.attack("POST", path, body, content_type)


@st.composite
def valid_npy_bodies(draw: st.DrawFn) -> bytes:
    """``.npy`` files np.save-like writers produce, of any order, version and dtype (maybe wrong shape)."""
    import io

    count = draw(st.integers(0, 9))
    shape = draw(st.sampled_from([(count, *INSTANCE_SHAPE), (count, 4, 4), (count, 16), INSTANCE_SHAPE, ()]))
    dtype = draw(st.sampled_from(["<f4", ">f8", "|u1", "<i4", "|b1", "<f2"]))
    array = np.asarray(np.random.default_rng(count).normal(size=shape) * 10).astype(dtype)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asfortranarray(array) if draw(st.booleans()) else array,
                              version=draw(st.sampled_from([(1, 0), (2, 0), (3, 0)])))
    return buffer.getvalue()


@FUZZ_SETTINGS
@given(path=st.sampled_from(PREDICT_PATHS[:3]), body=st.one_of(npy_bodies(), valid_npy_bodies(), st.binary()))
def test_predict_npy_bodies_never_get_a_server_error(fuzz_client: FuzzClient, path, body) -> None:
    fuzz_client.attack("POST", path, body, {**NPY, "Accept": "application/x-npy"})


def v2_tensors(binary: bool) -> st.SearchStrategy[dict]:
    dims = st.one_of(st.integers(-2, 10), st.integers(0, 2**66), st.booleans(), json_values)
    data = st.one_of(st.lists(st.floats(-10, 10), max_size=40), json_values)
    parameters = st.one_of(st.fixed_dictionaries({"binary_data_size": st.one_of(st.integers(-1, 700),
                                                                               st.booleans(), json_values)}),
                           json_values)
    return st.fixed_dictionaries(
        {"name": st.one_of(st.just("input"), json_values),
         "shape": st.one_of(st.lists(dims, max_size=5), st.just([1, *INSTANCE_SHAPE]), json_values),
         "datatype": st.one_of(st.sampled_from(["FP32", "FP64", "INT8", "UINT64", "BOOL", "BYTES", "fp32"]),
                               json_values)},
        optional={"parameters": parameters} if binary else {"data": data, "parameters": parameters})


def v2_requests(binary: bool) -> st.SearchStrategy[dict]:
    output = st.fixed_dictionaries({"name": st.one_of(st.just("probabilities"), json_values)},
                                   optional={"parameters": json_values})
    outputs = st.one_of(st.lists(output, max_size=2), json_values)
    return st.fixed_dictionaries({"inputs": st.one_of(st.lists(v2_tensors(binary), max_size=2), json_values)},
                                 optional={"outputs": outputs, "parameters": json_values, "id": json_values})


@FUZZ_SETTINGS
@given(path=st.sampled_from(INFER_PATHS), body=v2_requests(binary=False).map(encode).flatmap(mutated))
def test_v2_json_bodies_never_get_a_server_error(fuzz_client: FuzzClient, path, body) -> None:
    fuzz_client.attack("POST", path, body, JSON)


@FUZZ_SETTINGS
@given(path=st.sampled_from(INFER_PATHS), header=v2_requests(binary=True).map(encode),
       data=st.binary(max_size=700),
       length=st.one_of(st.none(), st.integers(-5, 2000).map(str), st.text(HEADER_CHARACTERS, max_size=6),
                        st.sampled_from(["١٢", "²", "0x10", " 12", "1" * 40])))
def test_v2_binary_bodies_never_get_a_server_error(fuzz_client: FuzzClient, path, header, data,
                                                   length) -> None:
    headers: dict[str, str | bytes] = {"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": str(len(header)) if length is None
                                       else length.encode("utf8")}
    fuzz_client.attack("POST", path, header + data, headers)
