"""Index geometry of a 2-D locally connected layer, in NumPy only.

Everything that depends on *where* a kernel tap reads from lives here, so that the Keras
layer, the kernel conversion and the ONNX lowerings share one definition:

* output length per axis: ``ceil((I - k + 1) / s)`` for "valid", ``ceil(I / s)`` for "same";
* the window of output position ``p`` starts at ``p * s`` ("valid") or ``p * s - k // 2``
  ("same"); taps that fall off the input read zero and carry no weight in implementations
  2 and 3 (this is tf_keras's ``conv_connected_inputs``).

A *location* ``l`` is an output position ``(or, oc)`` in row-major order; a *patch entry*
``p`` indexes the ``kh * kw * C`` taps of one window, ordered ``(kh, kw, C)`` for
channels_last and ``(C, kh, kw)`` for channels_first, as in tf_keras's implementation 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")


def output_length(input_length: int, kernel: int, stride: int, padding: str) -> int:
    """Output length along one axis, as tf_keras's ``conv_output_length``."""
    length = input_length if padding == "same" else input_length - kernel + 1
    return (length + stride - 1) // stride


def window_starts(output_len: int, kernel: int, stride: int, padding: str) -> np.ndarray:
    """First input index of every output position's window (may be negative for "same")."""
    shift = kernel // 2 if padding == "same" else 0
    return np.arange(output_len) * stride - shift


@dataclass(frozen=True)
class LocalGeometry:
    """Shapes and index maps of one LocallyConnected2D configuration.

    Args:
        input_rows, input_cols, channels: spatial size and channel count of one input.
        filters: output channels.
        kernel_size: ``(kh, kw)``.
        strides: ``(sh, sw)``.
        padding: ``"valid"`` or ``"same"`` (lower case).
        data_format: ``"channels_last"`` or ``"channels_first"``.
    """

    input_rows: int
    input_cols: int
    channels: int
    filters: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int]
    padding: str
    data_format: str

    @property
    def output_rows(self) -> int:
        return output_length(self.input_rows, self.kernel_size[0], self.strides[0], self.padding)

    @property
    def output_cols(self) -> int:
        return output_length(self.input_cols, self.kernel_size[1], self.strides[1], self.padding)

    @property
    def locations(self) -> int:
        return self.output_rows * self.output_cols

    @property
    def patch_size(self) -> int:
        return self.kernel_size[0] * self.kernel_size[1] * self.channels

    @property
    def input_size(self) -> int:
        return self.input_rows * self.input_cols * self.channels

    @property
    def output_size(self) -> int:
        return self.locations * self.filters

    @property
    def channels_first(self) -> bool:
        return self.data_format == "channels_first"

    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one input instance in its data format."""
        if self.channels_first:
            return (self.channels, self.input_rows, self.input_cols)
        return (self.input_rows, self.input_cols, self.channels)

    def output_shape(self) -> tuple[int, int, int]:
        """Shape of one output instance in its data format."""
        if self.channels_first:
            return (self.filters, self.output_rows, self.output_cols)
        return (self.output_rows, self.output_cols, self.filters)

    # --- index maps -------------------------------------------------------------------

    def axis_taps(self, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """Input index of every (output position, tap) along one axis, and whether it is on the input."""
        size = (self.input_rows, self.input_cols)[axis]
        kernel, stride = self.kernel_size[axis], self.strides[axis]
        out_len = (self.output_rows, self.output_cols)[axis]
        idx = window_starts(out_len, kernel, stride, self.padding)[:, None] + np.arange(kernel)[None, :]
        return idx, (idx >= 0) & (idx < size)

    @cached_property
    def _patch_index(self) -> tuple[np.ndarray, np.ndarray]:
        rows, row_ok = self.axis_taps(0)  # (OR, kh)
        cols, col_ok = self.axis_taps(1)  # (OC, kw)
        ch = np.arange(self.channels)
        r = rows[:, None, :, None, None]
        c = cols[None, :, None, :, None]
        k = ch[None, None, None, None, :]
        ok = (row_ok[:, None, :, None, None] & col_ok[None, :, None, :, None]) & np.ones_like(k, bool)
        if self.channels_first:
            flat = (k * self.input_rows + r) * self.input_cols + c  # (OR, OC, kh, kw, C)
        else:
            flat = (r * self.input_cols + c) * self.channels + k
        shape5 = (self.output_rows, self.output_cols, *self.kernel_size, self.channels)
        flat = np.broadcast_to(flat, shape5)
        ok = np.broadcast_to(ok, shape5)
        if self.channels_first:  # patch order (C, kh, kw)
            flat = flat.transpose(0, 1, 4, 2, 3)
            ok = ok.transpose(0, 1, 4, 2, 3)
        flat = np.where(ok, flat, -1).reshape(self.locations, self.patch_size)
        return flat.astype(np.int64), ok.reshape(self.locations, self.patch_size).copy()

    @property
    def patch_index(self) -> np.ndarray:
        """``(L, P)`` flat index into one input (native layout); ``-1`` where the tap is off the input."""
        return self._patch_index[0]

    @property
    def patch_valid(self) -> np.ndarray:
        """``(L, P)`` booleans: whether each tap is on the input."""
        return self._patch_index[1]

    @property
    def has_padding_taps(self) -> bool:
        return not bool(self.patch_valid.all())

    def padded_patch_index(self) -> np.ndarray:
        """Like :attr:`patch_index`, but off-input taps point at ``input_size`` (a zero slot)."""
        idx = self.patch_index.copy()
        idx[idx < 0] = self.input_size
        return idx

    @property
    def nonzeros(self) -> int:
        """Number of connected weights (the length of implementation 3's kernel)."""
        return int(self.patch_valid.sum()) * self.filters

    # --- kernel shapes ------------------------------------------------------------------

    def kernel_shape(self, implementation: int) -> tuple[int, ...]:
        """Kernel shape of tf_keras's LocallyConnected2D for one implementation."""
        if implementation == 1:
            return (self.locations, self.patch_size, self.filters)
        if implementation == 2:
            if self.channels_first:
                return (self.channels, self.input_rows, self.input_cols,
                        self.filters, self.output_rows, self.output_cols)
            return (self.input_rows, self.input_cols, self.channels,
                    self.output_rows, self.output_cols, self.filters)
        if implementation == 3:
            return (self.nonzeros,)
        raise ValueError(f"Invalid value for argument `implementation`. Expected 1, 2 or 3. "
                         f"Received: implementation={implementation!r}")

    def connectivity_mask(self) -> np.ndarray:
        """Implementation 2's mask, broadcastable against its 6-D kernel (tf_keras layout)."""
        rows, row_ok = self.axis_taps(0)
        cols, col_ok = self.axis_taps(1)
        row_mask = np.zeros((self.input_rows, self.output_rows), bool)
        col_mask = np.zeros((self.input_cols, self.output_cols), bool)
        for mask, idx, ok in ((row_mask, rows, row_ok), (col_mask, cols, col_ok)):
            out_pos = np.broadcast_to(np.arange(idx.shape[0])[:, None], idx.shape)
            mask[idx[ok], out_pos[ok]] = True
        spatial = row_mask[:, None, :, None] & col_mask[None, :, None, :]  # (IR, IC, OR, OC)
        if self.channels_first:
            return spatial[None, :, :, None, :, :]  # (1, IR, IC, 1, OR, OC)
        return spatial[:, :, None, :, :, None]  # (IR, IC, 1, OR, OC, 1)

    # --- implementation 3 ordering ------------------------------------------------------

    def sparse_order(self) -> np.ndarray:
        """Flat positions, in the local ``(L, P, F)`` kernel, of implementation 3's values.

        tf_keras sorts implementation 3's ``(out_idx, in_idx)`` pairs. For one output, the
        in-range taps in patch order are already in ascending ``in_idx``, so the order is:
        channels_last — location, filter, tap; channels_first — filter, location, tap.
        """
        L, P, F = self.locations, self.patch_size, self.filters
        local = np.arange(L * P * F, dtype=np.int64).reshape(L, P, F)
        valid = self.patch_valid
        if self.channels_first:
            ordered = local.transpose(2, 0, 1)  # (F, L, P)
            keep = np.broadcast_to(valid[None, :, :], ordered.shape)
        else:
            ordered = local.transpose(0, 2, 1)  # (L, F, P)
            keep = np.broadcast_to(valid[:, None, :], ordered.shape)
        return ordered[keep]

    def sparse_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """tf_keras's implementation 3 ``(out_idx, in_idx)`` for each value, sorted."""
        pos = self.sparse_order()
        L, P, F = self.locations, self.patch_size, self.filters
        loc, rem = np.divmod(pos, P * F)
        patch, filt = np.divmod(rem, F)
        in_idx = self.patch_index[loc, patch]
        out_idx = filt * L + loc if self.channels_first else loc * F + filt
        return out_idx, in_idx
