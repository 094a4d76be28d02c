"""Conversion of LocallyConnected2D kernels between implementations 1, 2 and 3.

All conversions go through the *local* layout of implementation 1, ``(L, P, F)``. Taps that
fall off the input ("same" padding) exist only in implementation 1's layout; converting them
away drops them and converting back fills zeros. Implementation 2's masked-out entries carry
no meaning and are dropped as well. Every other number is carried exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.geometry import LocalGeometry

_NDIM_TO_IMPLEMENTATION = {3: 1, 6: 2, 1: 3}


def _geometry_of(target: Any) -> LocalGeometry:
    if isinstance(target, LocalGeometry):
        return target
    geometry = getattr(target, "geometry", None)
    if isinstance(geometry, LocalGeometry):
        return geometry
    raise ValueError("Expected a LocalGeometry or a built LocallyConnected2D layer. "
                     f"Received: {type(target).__name__}")


def _dense_2d_view(kernel: np.ndarray, geo: LocalGeometry) -> np.ndarray:
    """Implementation 2's kernel as ``(input_size, L, F)`` (channels_last) or ``(input_size, F, L)``."""
    if geo.channels_first:
        return kernel.reshape(geo.input_size, geo.filters, geo.locations)
    return kernel.reshape(geo.input_size, geo.locations, geo.filters)


def to_local(kernel: np.ndarray, geo: LocalGeometry, implementation: int) -> np.ndarray:
    """Any implementation's kernel as implementation 1's ``(L, P, F)`` layout."""
    kernel = np.asarray(kernel)
    _check_shape(kernel, geo, implementation)
    L, P, F = geo.locations, geo.patch_size, geo.filters
    if implementation == 1:
        return kernel
    local = np.zeros((L, P, F), kernel.dtype)
    if implementation == 3:
        local.reshape(-1)[geo.sparse_order()] = kernel
        return local
    view = _dense_2d_view(kernel, geo)
    loc, patch = np.nonzero(geo.patch_valid)
    rows = geo.patch_index[loc, patch]
    local[loc, patch, :] = view[rows, :, loc] if geo.channels_first else view[rows, loc, :]
    return local


def from_local(local: np.ndarray, geo: LocalGeometry, implementation: int) -> np.ndarray:
    """Implementation 1's ``(L, P, F)`` kernel in another implementation's layout."""
    local = np.asarray(local)
    _check_shape(local, geo, 1)
    if implementation == 1:
        return local
    if implementation == 3:
        return local.reshape(-1)[geo.sparse_order()]
    dense = np.zeros(geo.kernel_shape(2), local.dtype)
    view = _dense_2d_view(dense, geo)
    loc, patch = np.nonzero(geo.patch_valid)
    rows = geo.patch_index[loc, patch]
    if geo.channels_first:
        view[rows, :, loc] = local[loc, patch, :]
    else:
        view[rows, loc, :] = local[loc, patch, :]
    return dense


def convert_kernel(
    kernel: np.ndarray,
    geometry: Any,
    to_implementation: int,
    from_implementation: int | None = None,
) -> np.ndarray:
    """Convert a LocallyConnected2D kernel from one implementation's layout to another's.

    Args:
        kernel: the kernel, in tf_keras's layout for ``from_implementation``.
        geometry: a :class:`LocalGeometry` or a built ``LocallyConnected2D`` layer.
        to_implementation: 1, 2 or 3.
        from_implementation: 1, 2 or 3; inferred from ``kernel.ndim`` when omitted.

    Returns:
        The kernel in ``to_implementation``'s layout, same dtype. Exact for every connected
        weight; implementation 2's masked entries and implementation 1's off-input taps
        ("same" padding) are not carried and become zeros.

    Example:
        >>> geo = LocalGeometry(5, 5, 2, 3, (3, 3), (1, 1), "valid", "channels_last")
        >>> k1 = np.random.rand(*geo.kernel_shape(1)).astype("float32")
        >>> k3 = convert_kernel(k1, geo, 3)
        >>> bool(np.array_equal(convert_kernel(k3, geo, 1), k1))
        True
    """
    geo = _geometry_of(geometry)
    kernel = np.asarray(kernel)
    if from_implementation is None:
        if kernel.ndim not in _NDIM_TO_IMPLEMENTATION:
            raise ValueError("Invalid kernel. Expected 3 (implementation 1), 6 (implementation 2) "
                             f"or 1 (implementation 3) dimensions. Received: shape={kernel.shape}")
        from_implementation = _NDIM_TO_IMPLEMENTATION[kernel.ndim]
    geo.kernel_shape(to_implementation)  # validates the target
    if from_implementation == to_implementation:
        _check_shape(kernel, geo, from_implementation)
        return kernel
    return from_local(to_local(kernel, geo, from_implementation), geo, to_implementation)


def _check_shape(kernel: np.ndarray, geo: LocalGeometry, implementation: int) -> None:
    expected = geo.kernel_shape(implementation)
    if tuple(kernel.shape) != expected:
        raise ValueError(f"Invalid kernel for implementation {implementation}. Expected shape "
                         f"{expected}. Received: shape={tuple(kernel.shape)}")
