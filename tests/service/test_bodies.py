"""The ``.npy`` codec of the service against NumPy's own ``np.save`` / ``np.load``, on random data."""

import io

import numpy as np
import pytest

from service.api.bodies import npy_bytes, parse_npy
from service.errors import MalformedRequestError


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
