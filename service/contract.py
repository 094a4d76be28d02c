"""The input contract of a served model: what one instance must look like.

An :class:`InputContract` is built from the ``lc2d.*`` metadata that ``lc2d export`` writes into
the ONNX file (see ``docs/model-format.md``), falling back to the graph signature for any other
ONNX file. ``validate_batch`` and ``validate_instances`` turn client data into the float32 array
ONNX Runtime needs, checked against the serving :class:`InputLimits` of the model's configuration
(the file itself has none), or raise a typed :class:`~service.errors.InvalidInputError` (HTTP 422) that
says what was expected and what was received.

Example:
    >>> contract = InputContract(input_name="input", instance_shape=(8, 8, 1))
    >>> contract.validate_batch(np.ones((2, 8, 8, 1), dtype=np.int64)).dtype
    dtype('float32')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import (
    BatchTooLargeError,
    DtypeError,
    EmptyBatchError,
    ModelLoadError,
    NonFiniteInputError,
    ShapeMismatchError,
    format_shape,
)
from service.model_format import Key, MetadataFormatError, check_format_version, read_json

SUPPORTED_INPUT_DTYPES = ("float32",)
# ONNX Runtime type strings of graph inputs -> NumPy dtype names.
_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8"}

Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class InputLimits:
    """Serving limits a request is checked against besides the contract.

    They belong to the model's configuration (``service.model_config.ModelConfig.limits``), not
    to the file; batch scoring passes its own.

    Attributes:
        max_batch_size: most instances accepted in one call; ``None`` for no limit.
        allow_non_finite: accept NaN and infinities (refused by default).
    """

    max_batch_size: int | None = None
    allow_non_finite: bool = False


NO_LIMITS = InputLimits()


@dataclass(frozen=True)
class TensorSpec:
    """Name, per-instance shape and dtype of one graph input or output (batch axis excluded).

    Attributes:
        name: the graph name.
        instance_shape: dimensions after the batch axis, ``None`` where any size is accepted.
        dtype: NumPy dtype name, ``"float32"`` for exported models.
    """

    name: str
    instance_shape: Shape
    dtype: str = "float32"


@dataclass(frozen=True)
class InputContract:
    """What a model accepts and returns, read from its ONNX file.

    Attributes:
        input_name: graph input name (``lc2d.input_name``).
        instance_shape: one instance's shape, no batch axis (``lc2d.input_shape``); ``None`` marks
            a free dimension (only for ONNX files without metadata).
        dtype: the input dtype; only ``"float32"`` is served.
        data_format: ``"channels_last"``, ``"channels_first"`` or ``None`` when unknown.
        output_names: graph output names in order (``lc2d.output_names``).
        outputs: shape and dtype of each output, from the graph signature.
        labels: class names (``lc2d.labels``) or ``None``.
        model_name: ``lc2d.model_name`` or ``None``.
        metadata: every metadata property of the file, raw strings.
    """

    input_name: str
    instance_shape: Shape
    dtype: str = "float32"
    data_format: str | None = None
    output_names: tuple[str, ...] = ("output",)
    outputs: tuple[TensorSpec, ...] = ()
    labels: tuple[str, ...] | None = None
    model_name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def from_onnx(cls, metadata: Mapping[str, str], inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec]) -> InputContract:
        """Builds the contract from metadata properties and the graph signature.

        Args:
            metadata: the model's ``metadata_props`` (string to string).
            inputs: graph inputs, batch axis removed from their shapes.
            outputs: graph outputs, batch axis removed from their shapes.

        Returns:
            The contract; ``lc2d.*`` keys win over the signature when both are present.

        Raises:
            ModelLoadError: when the graph has not exactly one input, or the metadata is
                malformed or contradicts the graph.
        """
        if len(inputs) != 1:
            raise ModelLoadError(
                f"expected a model with exactly one graph input, received {len(inputs)}: "
                f"{[spec.name for spec in inputs]}")
        graph_input = inputs[0]
        try:
            check_format_version(metadata)
        except MetadataFormatError as err:
            raise ModelLoadError(str(err)) from err
        name = metadata.get(Key.INPUT_NAME, graph_input.name)
        if name != graph_input.name:
            raise ModelLoadError(f"metadata {Key.INPUT_NAME} is {name!r} but the graph input is "
                                 f"{graph_input.name!r}")
        shape = _metadata_shape(metadata, graph_input.instance_shape)
        output_names = tuple(_metadata_json(metadata, Key.OUTPUT_NAMES, [spec.name for spec in outputs]))
        labels = _metadata_json(metadata, Key.LABELS, None)
        return cls(
            input_name=name,
            instance_shape=shape,
            dtype=metadata.get(Key.INPUT_DTYPE, graph_input.dtype),
            data_format=metadata.get(Key.DATA_FORMAT),
            output_names=output_names,
            outputs=tuple(outputs),
            labels=tuple(str(label) for label in labels) if labels else None,
            model_name=metadata.get(Key.MODEL_NAME),
            metadata=dict(metadata),
        )

    @classmethod
    def from_session(cls, session: Any) -> InputContract:
        """Builds the contract of an ``onnxruntime.InferenceSession``.

        Args:
            session: a loaded ONNX Runtime session.

        Returns:
            The contract read from the session's metadata and signature.
        """
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        inputs = [_spec_from_node_arg(arg) for arg in session.get_inputs()]
        outputs = [_spec_from_node_arg(arg) for arg in session.get_outputs()]
        return cls.from_onnx(metadata, inputs, outputs)

    @classmethod
    def from_file(cls, path: str | Path) -> InputContract:
        """Builds the contract of an ``.onnx`` file without opening a session (or importing onnx).

        Raises:
            ModelLoadError: the file is missing, is not an ONNX model, or breaks the rules above.
        """
        from service.onnx_file import read_signature

        signature = read_signature(path)
        inputs = [TensorSpec(v.name, v.shape[1:], v.dtype) for v in signature.inputs]
        outputs = [TensorSpec(v.name, v.shape[1:], v.dtype) for v in signature.outputs]
        return cls.from_onnx(signature.metadata, inputs, outputs)

    # --- validation ---------------------------------------------------------------------------

    @property
    def batch_shape(self) -> Shape:
        """The full input shape with ``None`` for the batch axis."""
        return (None, *self.instance_shape)

    def validate_batch(self, array: Any, limits: InputLimits = NO_LIMITS) -> np.ndarray:
        """Checks a whole batch (batch axis first) and returns it as contiguous float32.

        Args:
            array: a NumPy array or nested lists, shaped ``[batch, *instance_shape]``.
            limits: the serving limits (batch size, NaN/Inf policy).

        Returns:
            A C-contiguous float32 array of the same values.

        Raises:
            DtypeError: strings, objects, booleans or complex values.
            ShapeMismatchError: a rank or dimension that differs from the contract.
            EmptyBatchError: a batch of zero instances.
            BatchTooLargeError: more than ``max_batch_size`` instances.
            NonFiniteInputError: NaN or infinity, unless ``allow_non_finite``.
        """
        batch = _to_float32(array, where="the batch")
        if batch.ndim != len(self.instance_shape) + 1 or not _matches(batch.shape[1:], self.instance_shape):
            raise ShapeMismatchError(
                f"the batch has shape {format_shape(batch.shape)}, expected "
                f"{format_shape(self.batch_shape)} (batch axis first)",
                expected=_json_shape(self.batch_shape), received=list(batch.shape))
        _check_batch_size(batch.shape[0], limits)
        _check_finite(batch, limits)
        return np.ascontiguousarray(batch)

    def validate_instances(self, instances: Sequence[Any], limits: InputLimits = NO_LIMITS) -> np.ndarray:
        """Checks a list of instances (no batch axis each) and stacks them into one batch.

        Args:
            instances: one entry per instance, each nested lists or an array.
            limits: the serving limits (batch size, NaN/Inf policy).

        Returns:
            A float32 array ``[len(instances), *instance_shape]``.

        Raises:
            ShapeMismatchError: naming the first instance whose shape is wrong, e.g.
                "instance 3 has shape [32, 32], expected [32, 32, 3]".
            DtypeError, EmptyBatchError, BatchTooLargeError, NonFiniteInputError: as
                :meth:`validate_batch`.
        """
        if isinstance(instances, np.ndarray) and instances.ndim > 0:  # decoded whole (bodies.parse_json)
            _check_batch_size(len(instances), limits)
            return self.validate_batch(instances, limits)
        if not isinstance(instances, Sequence) or isinstance(instances, str | bytes):
            raise ShapeMismatchError(
                f"expected a list of instances, received {type(instances).__name__}",
                expected="list", received=type(instances).__name__)
        _check_batch_size(len(instances), limits)
        rows = [self._validate_instance(index, instance) for index, instance in enumerate(instances)]
        batch = np.stack(rows)
        _check_finite(batch, limits)
        return batch

    def _validate_instance(self, index: int, instance: Any) -> np.ndarray:
        where = f"instance {index}"
        row = _to_float32(instance, where=where)
        if not _matches(row.shape, self.instance_shape):
            raise ShapeMismatchError(
                f"{where} has shape {format_shape(row.shape)}, expected "
                f"{format_shape(self.instance_shape)}",
                instance=index, expected=_json_shape(self.instance_shape), received=list(row.shape))
        return row



# --- helpers --------------------------------------------------------------------------------------


def _check_batch_size(size: int, limits: InputLimits) -> None:
    if size == 0:
        raise EmptyBatchError("expected at least one instance, received 0",
                              expected=">= 1", received=0)
    if limits.max_batch_size is not None and size > limits.max_batch_size:
        raise BatchTooLargeError(
            f"expected at most {limits.max_batch_size} instances per request, received {size}",
            expected=limits.max_batch_size, received=size)


def _check_finite(batch: np.ndarray, limits: InputLimits) -> None:
    if limits.allow_non_finite:
        return
    finite = np.isfinite(batch)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    first = bad[0]
    raise NonFiniteInputError(
        f"expected finite values, received {len(bad)} NaN/Inf value(s); the first is in "
        f"instance {int(first[0])} at index {[int(i) for i in first[1:]]}",
        instance=int(first[0]), count=int(len(bad)))


def _to_float32(data: Any, *, where: str) -> np.ndarray:
    """Converts numbers (floats or integers) to float32; refuses everything else."""
    try:
        array = data if isinstance(data, np.ndarray) else np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError) as err:  # ragged or too deep lists
        raise ShapeMismatchError(f"{where} is not a rectangular array of numbers: {err}",
                                 expected="a rectangular array of numbers", received="ragged lists"
                                 ) from err
    if array.dtype.kind not in "fiu":
        kind = {"U": "strings", "S": "bytes", "O": "objects or ragged lists", "b": "booleans",
                "c": "complex numbers"}.get(array.dtype.kind, str(array.dtype))
        raise DtypeError(f"{where} has {kind} ({array.dtype}), expected numbers convertible to float32",
                         expected="float32", received=str(array.dtype))
    return array.astype(np.float32, copy=False)


def _matches(shape: Sequence[int], expected: Shape) -> bool:
    if len(shape) != len(expected):
        return False
    return all(e is None or s == e for s, e in zip(shape, expected, strict=True))


def _json_shape(shape: Shape) -> list[int | None]:
    return list(shape)


def _metadata_json(metadata: Mapping[str, str], key: str, default: Any) -> Any:
    try:
        return read_json(metadata, key, default)
    except MetadataFormatError as err:
        raise ModelLoadError(str(err)) from err


def _metadata_shape(metadata: Mapping[str, str], graph_shape: Shape) -> Shape:
    shape = _metadata_json(metadata, Key.INPUT_SHAPE, None)
    if shape is None:
        return graph_shape
    if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelLoadError(f"metadata {Key.INPUT_SHAPE} must be a list of positive integers, "
                             f"received {metadata[Key.INPUT_SHAPE]!r}")
    if not _matches(shape, graph_shape):
        raise ModelLoadError(f"metadata {Key.INPUT_SHAPE} {shape} contradicts the graph input shape "
                             f"{format_shape(graph_shape)}")
    return tuple(shape)


def _spec_from_node_arg(arg: Any) -> TensorSpec:
    """Reads an ORT ``NodeArg``; symbolic or unknown dims become ``None``; drops the batch axis."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in (arg.shape or [])]
    return TensorSpec(name=arg.name, instance_shape=tuple(dims[1:]),
                      dtype=_ORT_TYPES.get(arg.type, arg.type))
