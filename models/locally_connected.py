"""LocallyConnected2D for Keras 3, weight-compatible with tf_keras's layer."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import activations, constraints, initializers, ops, regularizers

from models.geometry import DATA_FORMATS, PADDINGS, LocalGeometry, output_length

IMPLEMENTATIONS = (1, 2, 3)


def _normalize_pair(value: Any, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        result = tuple(int(v) for v in pair)
        exact = all(int(v) == v for v in pair)
    except (TypeError, ValueError):
        result, exact = (), False
    if len(result) != 2 or not exact or min(result) <= 0:
        raise ValueError(f"Invalid value for argument `{name}`. Expected a positive integer or a "
                         f"tuple of 2 positive integers. Received: {name}={value!r}")
    return (result[0], result[1])


def _normalize_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    normalized = value.lower() if isinstance(value, str) else value
    if normalized not in choices:
        raise ValueError(f"Invalid value for argument `{name}`. Expected one of {list(choices)}. "
                         f"Received: {name}={value!r}")
    return str(normalized)


@keras.saving.register_keras_serializable(package="lc2d")
class LocallyConnected2D(keras.layers.Layer):
    """2-D locally connected layer: a convolution whose weights are not shared.

    Every output location has its own filter bank. Weight layouts match tf_keras's
    ``LocallyConnected2D`` for each implementation, so ``set_weights`` accepts a tf_keras
    layer's weights unchanged.

    Args:
        filters: number of output filters, a positive integer.
        kernel_size: int or tuple of 2 ints, the window's height and width.
        strides: int or tuple of 2 ints.
        padding: ``"valid"`` or ``"same"`` (case-insensitive), for every implementation. With
            "same" the window of output position ``p`` starts at ``p * s - k // 2`` and taps off
            the input read zero (tf_keras's implementation 2/3 semantics; tf_keras refuses
            "same" for implementation 1, this layer accepts it).
        data_format: ``"channels_last"`` or ``"channels_first"``; defaults to
            ``keras.config.image_data_format()``.
        activation: activation applied to the output.
        use_bias: whether to add a bias of shape ``(out_rows, out_cols, filters)``.
        kernel_initializer, bias_initializer: initializers.
        kernel_regularizer, bias_regularizer, activity_regularizer: regularizers.
        kernel_constraint, bias_constraint: constraints.
        implementation: how the forward pass is computed and the kernel stored:
            1 — kernel ``(L, kh*kw*C, F)``; patches are gathered with one precomputed index and
            multiplied in one batched matmul over locations (with "same" padding every location
            keeps a full patch; off-input taps read zero).
            2 — the dense 6-D kernel ``(IR, IC, C, OR, OC, F)`` (channels_first:
            ``(C, IR, IC, F, OR, OC)``) multiplied by a fixed connectivity mask; one matmul. It
            stores the *full* masked kernel, so its parameter count includes unconnected
            entries, which never influence outputs.
            3 — a 1-D vector of the connected weights only, in tf_keras's sorted
            ``(out_idx, in_idx)`` order; memory proportional to the non-zeros.

    Input shape:
        ``(batch, rows, cols, channels)`` for channels_last, ``(batch, channels, rows, cols)``
        for channels_first. Rows and cols must be known.

    Output shape:
        ``(batch, new_rows, new_cols, filters)`` or ``(batch, filters, new_rows, new_cols)``.

    Example:
        >>> model = keras.Sequential([
        ...     keras.Input((32, 32, 3)),
        ...     LocallyConnected2D(64, (3, 3)),
        ...     LocallyConnected2D(32, (3, 3)),
        ... ])
        >>> model.output_shape
        (None, 28, 28, 32)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        implementation: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters <= 0:
            raise ValueError("Invalid value for argument `filters`. Expected a positive integer. "
                             f"Received: filters={filters!r}")
        if implementation not in IMPLEMENTATIONS or isinstance(implementation, bool):
            raise ValueError("Invalid value for argument `implementation`. Expected 1, 2 or 3. "
                             f"Received: implementation={implementation!r}")
        self.filters = int(filters)
        self.kernel_size = _normalize_pair(kernel_size, "kernel_size")
        self.strides = _normalize_pair(strides, "strides")
        self.padding = _normalize_choice(padding, "padding", PADDINGS)
        self.data_format = _normalize_choice(
            data_format or keras.config.image_data_format(), "data_format", DATA_FORMATS)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.implementation = int(implementation)
        self.input_spec = keras.layers.InputSpec(ndim=4)
        self.geometry: LocalGeometry | None = None

    # --- shapes -------------------------------------------------------------------------

    def _spatial(self, input_shape: tuple[Any, ...]) -> tuple[Any, Any, Any]:
        if len(input_shape) != 4:
            raise ValueError("Invalid input shape. Expected a 4-D shape (batch, ...). "
                             f"Received: input_shape={tuple(input_shape)}")
        if self.data_format == "channels_first":
            return input_shape[2], input_shape[3], input_shape[1]
        return input_shape[1], input_shape[2], input_shape[3]

    def _output_spatial(self, rows: int, cols: int) -> tuple[int, int]:
        out_rows = output_length(rows, self.kernel_size[0], self.strides[0], self.padding)
        out_cols = output_length(cols, self.kernel_size[1], self.strides[1], self.padding)
        if out_rows <= 0 or out_cols <= 0:
            raise ValueError(
                f"Invalid kernel_size={self.kernel_size} for an input of {rows}x{cols} with "
                f"padding='{self.padding}'. Expected a positive output size. Received an output "
                f"size of {out_rows}x{out_cols}.")
        return out_rows, out_cols

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        rows, cols, _ = self._spatial(tuple(input_shape))
        if rows is None or cols is None:
            out_rows, out_cols = None, None
        else:
            out_rows, out_cols = self._output_spatial(rows, cols)
        if self.data_format == "channels_first":
            return (input_shape[0], self.filters, out_rows, out_cols)
        return (input_shape[0], out_rows, out_cols, self.filters)

    # --- weights ------------------------------------------------------------------------

    def build(self, input_shape: tuple[Any, ...]) -> None:
        rows, cols, channels = self._spatial(tuple(input_shape))
        if rows is None or cols is None or channels is None:
            raise ValueError("LocallyConnected2D needs known spatial dimensions and channels. "
                             f"Expected (rows, cols, channels) to be integers. Received: "
                             f"input_shape={tuple(input_shape)}")
        self._output_spatial(rows, cols)
        geo = LocalGeometry(int(rows), int(cols), int(channels), self.filters, self.kernel_size,
                            self.strides, self.padding, self.data_format)
        self.geometry = geo
        self.kernel = self.add_weight(
            name="kernel", shape=geo.kernel_shape(self.implementation),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(geo.output_rows, geo.output_cols, self.filters),
                initializer=self.bias_initializer, regularizer=self.bias_regularizer,
                constraint=self.bias_constraint)
        self._prepare_indices(geo)
        axis = 1 if self.data_format == "channels_first" else -1
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={axis: int(channels)})
        self.built = True

    def _prepare_indices(self, geo: LocalGeometry) -> None:
        # Plain NumPy constants: recomputed at build, never saved as weights.
        self._patch_index = geo.padded_patch_index().astype("int32").reshape(-1)
        if self.implementation == 2:
            self._mask = geo.connectivity_mask().astype(self.dtype)
        if self.implementation == 3:
            self._sparse_gather = None
            if geo.has_padding_taps:
                # Position of each local (L, P, F) entry in the 1-D kernel; pads read a zero slot.
                inverse = np.full(geo.locations * geo.patch_size * geo.filters, geo.nonzeros,
                                  dtype="int64")
                inverse[geo.sparse_order()] = np.arange(geo.nonzeros)
                self._sparse_gather = inverse.astype("int32")

    # --- forward pass -------------------------------------------------------------------

    def _local_kernel(self) -> Any:
        """The kernel in implementation 1's (L, P, F) layout (implementations 1 and 3)."""
        geo = self.geometry
        assert geo is not None
        L, P, F = geo.locations, geo.patch_size, geo.filters
        if self.implementation == 1:
            return self.kernel
        if self._sparse_gather is not None:
            padded = ops.concatenate([self.kernel, ops.zeros((1,), self.kernel.dtype)], axis=0)
            return ops.reshape(ops.take(padded, self._sparse_gather, axis=0), (L, P, F))
        if geo.channels_first:  # values ordered (F, L, P)
            return ops.transpose(ops.reshape(self.kernel, (F, L, P)), (1, 2, 0))
        return ops.transpose(ops.reshape(self.kernel, (L, F, P)), (0, 2, 1))

    def _call_local(self, flat: Any) -> Any:
        geo = self.geometry
        assert geo is not None
        if geo.has_padding_taps:
            flat = ops.pad(flat, ((0, 0), (0, 1)))
        patches = ops.take(flat, self._patch_index, axis=1)
        patches = ops.reshape(patches, (-1, geo.locations, geo.patch_size))
        out = ops.einsum("nlp,lpf->nlf", patches, self._local_kernel())
        if geo.channels_first:
            out = ops.transpose(out, (0, 2, 1))
        return out

    def _call_dense(self, flat: Any) -> Any:
        geo = self.geometry
        assert geo is not None
        kernel = ops.reshape(self.kernel * self._mask, (geo.input_size, geo.output_size))
        return ops.matmul(flat, kernel)

    def call(self, inputs: Any) -> Any:
        geo = self.geometry
        assert geo is not None
        flat = ops.reshape(inputs, (-1, geo.input_size))
        out = self._call_dense(flat) if self.implementation == 2 else self._call_local(flat)
        out = ops.reshape(out, (-1, *geo.output_shape()))
        if self.use_bias:
            # tf_keras adds the (OR, OC, F) bias reshaped (not transposed) to the output layout.
            out = out + ops.reshape(self.bias, geo.output_shape())
        return self.activation(out) if self.activation is not None else out

    # --- config -------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "implementation": self.implementation,
        })
        return config
