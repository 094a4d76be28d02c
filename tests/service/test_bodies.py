"""The ``.npy`` codec of the service against NumPy's own ``np.save`` / ``np.load``, on random data."""

import io
import json

import numpy as np
import orjson
import pytest

from service.api.bodies import LARGE_BODY_BYTES, npy_bytes, parse_json, parse_npy
from service.errors import DtypeError, MalformedRequestError


def saved(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [
        rng.normal(size=(1, 32, 32, 3)).astype(np.float32),  # a request of one instance
        rng.normal(size=(5, 8, 8, 1)).astype(np.float32),
        rng.normal(size=(3, 4)),  # float64
        rng.normal(size=(2, 3)).astype(">f4"),  # big-endian
        rng.normal(size=(2, 2)).astype(np.float16),
        rng.integers(-100, 100, size=(4, 3)).astype(np.int8),
        rng.integers(0, 2, size=7).astype(bool),
        np.asarray(rng.normal()),  # 0-d
        np.zeros((0, 3), np.float32),  # empty
        np.asfortranarray(rng.normal(size=(3, 4))),  # np.save writes fortran_order True: np.load decodes it
        rng.normal(size=(4, 6))[:, ::2],  # not contiguous
        np.asarray(["ab", "c"]),
        np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]),  # structured: np.load decodes it
    ]


@pytest.mark.parametrize("array", _arrays(), ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_parse_npy_reads_what_np_save_writes(array: np.ndarray) -> None:
    decoded = parse_npy(saved(array))
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("array", _arrays(), ids=lambda a: f"{a.dtype.str}{list(a.shape)}")
def test_npy_bytes_is_what_np_load_reads_and_np_save_writes(array: np.ndarray) -> None:
    encoded = npy_bytes(array)
    decoded = np.load(io.BytesIO(encoded), allow_pickle=False)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)
    if array.flags.c_contiguous:  # byte for byte what np.save writes (Fortran order is written as C)
        assert encoded == saved(array)


def test_parse_npy_refuses_a_body_shorter_than_its_header_says() -> None:
    body = saved(np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32))
    with pytest.raises(MalformedRequestError, match=r"shape \[2, 3\] \(24 bytes\), but only 20 data bytes"):
        parse_npy(body[:-4])


@pytest.mark.parametrize("body", [b"", b"\x93NUMPY", b"\x93NUMPY\x01\x00\xff\xff{'descr'", b"not npy at all",
                                  b"\x93NUMPY\x01\x00\x10\x00{'descr': 'xx'}\n"])
def test_parse_npy_refuses_broken_bodies_with_400(body: bytes) -> None:
    with pytest.raises(MalformedRequestError) as caught:
        parse_npy(body)
    assert caught.value.status_code == 400 and ".npy" in caught.value.message


# --- JSON: large numeric arrays are decoded slice by slice, exactly as orjson + NumPy read them ----


def _reference(body: bytes) -> object:
    return orjson.loads(body)


@pytest.mark.parametrize(("layout", "shape", "indent"), [
    ("instances", (80, 16, 16, 3), None),
    ("instances", (300_000,), None),
    ("inputs", (1, 1, 200_000), 1),
    ("v2", (30, 32, 32, 3), None),
    ("instances", (20_000, 1, 1, 1), 2),
])
def test_parse_json_large_numeric_array_equals_orjson_and_numpy(layout, shape, indent) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=shape).astype(np.float32)
    values.flat[::7] = np.round(values.flat[::7] * 100)  # integers among floats
    payload = ({"id": "r", "inputs": [{"name": "x", "shape": list(shape), "datatype": "FP32",
                                       "data": values.ravel().tolist()}]} if layout == "v2"
               else {layout: values.tolist()})
    body = json.dumps(payload, indent=indent).encode()
    assert len(body) >= LARGE_BODY_BYTES
    decoded = parse_json(body)
    expected = _reference(body)
    if layout == "v2":
        got, want = decoded["inputs"][0].pop("data"), expected["inputs"][0].pop("data")
        assert decoded == expected  # the rest of the body is read as it is
    else:
        got, want = decoded[layout], expected[layout]
    assert isinstance(got, np.ndarray) and got.dtype == np.float32  # decoded whole, no Python lists
    np.testing.assert_array_equal(got, np.asarray(want, np.float64).astype(np.float32))  # bit for bit


@pytest.mark.parametrize("broken", [
    b"[[1, 2], [3]]",  # ragged
    b"[[1, 2], [3, 4 5]]",  # two numbers in one slot
    b"[[1, 2], [3, , 4]]",  # an empty slot
    b"[[1, 2] [3, 4]]",  # a missing comma
    b"[[1, 2], [3, 01]]",  # not a JSON number
])
def test_parse_json_large_broken_array_is_judged_by_the_general_reader(broken) -> None:
    filler = b"[" + b"0.5, " * (LARGE_BODY_BYTES // 5) + b"0.5]"
    body = b'{"instances": [' + filler + b", " + broken + b"]}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        with pytest.raises(MalformedRequestError, match="not valid JSON"):
            parse_json(body)
    else:  # valid JSON, ragged: lists for the contract to refuse, as for a small body
        assert isinstance(parse_json(body)["instances"], list)


def test_parse_json_refuses_booleans_inside_arrays_only() -> None:
    assert parse_json(b'{"outputs": [{"parameters": {"binary_data": true}}]}')
    with pytest.raises(DtypeError, match="boolean"):
        parse_json(b'{"instances": [[0.5, true]]}')
