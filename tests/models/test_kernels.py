"""Kernel conversion between implementations: exact both ways for every connected weight."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models import LocalGeometry, convert_kernel
from tests.models import reference

GEOMETRIES = [
    LocalGeometry(7, 5, 2, 3, (3, 2), strides, padding, fmt)
    for strides, padding, fmt in itertools.product(
        ((1, 1), (2, 3)), ("valid", "same"), ("channels_last", "channels_first"))
]


def ids(geo: LocalGeometry) -> str:
    return f"{geo.padding}-{geo.data_format}-s{geo.strides[0]}{geo.strides[1]}"


def random_kernel(geo: LocalGeometry, impl: int, rng: np.random.Generator) -> np.ndarray:
    kernel = rng.standard_normal(geo.kernel_shape(impl)).astype("float32")
    if impl == 2:
        kernel *= np.broadcast_to(geo.connectivity_mask(), kernel.shape)
    if impl == 1:
        kernel[~geo.patch_valid] = 0  # off-input taps of "same" are not carried by 2 and 3
    return kernel


@pytest.mark.parametrize("geo", GEOMETRIES, ids=ids)
@pytest.mark.parametrize(("source", "target"), list(itertools.permutations((1, 2, 3), 2)))
def test_convert_kernel_round_trip_is_exact(geo, source, target, rng):
    kernel = random_kernel(geo, source, rng)
    there = convert_kernel(kernel, geo, target)
    assert there.shape == geo.kernel_shape(target)
    np.testing.assert_array_equal(convert_kernel(there, geo, source, target), kernel)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=ids)
@pytest.mark.parametrize(("source", "target"), list(itertools.permutations((1, 2, 3), 2)))
def test_converted_kernel_computes_the_same_function(geo, source, target, rng):
    kernel = random_kernel(geo, source, rng)
    args = (geo.input_rows, geo.input_cols, geo.channels, geo.filters, geo.kernel_size,
            geo.strides, geo.padding, geo.data_format)
    np.testing.assert_array_equal(
        reference.dense_weights(convert_kernel(kernel, geo, target), target, *args),
        reference.dense_weights(kernel, source, *args))


def test_convert_kernel_rejects_a_kernel_of_the_wrong_shape():
    geo = GEOMETRIES[0]
    with pytest.raises(ValueError, match=r"Expected shape \(20, 12, 3\)"):
        convert_kernel(np.zeros((15, 6, 4), "float32"), geo, 3)
    with pytest.raises(ValueError, match="Received: shape=\\(2, 2\\)"):
        convert_kernel(np.zeros((2, 2), "float32"), geo, 1)
    with pytest.raises(ValueError, match="`implementation`"):
        convert_kernel(np.zeros(geo.kernel_shape(1), "float32"), geo, 5)


def test_nonzeros_counts_only_connected_weights():
    geo = LocalGeometry(4, 4, 1, 1, (3, 3), (1, 1), "same", "channels_last")
    # corners see 4 taps, edges 6, the 4 inner positions 9
    assert geo.nonzeros == 4 * 4 + 8 * 6 + 4 * 9
    assert geo.kernel_shape(1) == (16, 9, 1)
