"""The signature and metadata of an ``.onnx`` file, read without onnx or ONNX Runtime.

An ``.onnx`` file is one protobuf ``ModelProto``. This module walks its wire format (varints and
length-delimited fields, https://protobuf.dev/programming-guides/encoding/) far enough to read
``metadata_props`` and the graph's inputs and outputs, and skips everything else by its length,
weights included; the file is memory-mapped, so a large model is not read into memory. It
serves callers that need the contract but no session: the Ray scoring driver (its actors hold
the sessions) and anything that lists models without loading them.

Field numbers are those of onnx/onnx.proto (ModelProto.graph = 7, ModelProto.metadata_props =
14, GraphProto.initializer = 5, .input = 11, .output = 12, ...).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from service.errors import ModelLoadError

# TensorProto.DataType -> NumPy dtype name (others are reported as "onnx type N").
_ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64"}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class GraphValue:
    """A graph input or output: name, dtype name and full shape (None for a symbolic dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class OnnxSignature:
    """What an ``.onnx`` file declares: metadata properties, inputs (not initializers), outputs."""

    metadata: dict[str, str]
    inputs: tuple[GraphValue, ...]
    outputs: tuple[GraphValue, ...]


def read_signature(path: str | Path) -> OnnxSignature:
    """Reads the metadata and the graph signature of an ``.onnx`` file.

    Raises:
        ModelLoadError: the file is missing or is not a protobuf ModelProto.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist", path=str(path))
    with path.open("rb") as handle:
        if path.stat().st_size == 0:
            raise ModelLoadError(f"model file {str(path)!r} is empty, expected an ONNX model", path=str(path))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return _model(view)
            except (IndexError, ValueError, UnicodeDecodeError) as err:
                raise ModelLoadError(f"model file {str(path)!r} is not a valid ONNX model: {err}",
                                     path=str(path)) from err
            finally:
                view.release()


def _model(buf: memoryview) -> OnnxSignature:
    metadata: dict[str, str] = {}
    graph: memoryview | None = None
    for field, value in _fields(buf):
        if field == 14 and isinstance(value, memoryview):
            entry = dict(_fields(value))
            metadata[_text(entry.get(1))] = _text(entry.get(2))
        elif field == 7 and isinstance(value, memoryview):
            graph = value
    if graph is None:
        raise ValueError("no graph")
    initializers: set[str] = set()
    inputs, outputs = [], []
    for field, value in _fields(graph):
        if not isinstance(value, memoryview):
            continue
        if field == 5:  # TensorProto: its name is field 8
            initializers.add(_text(dict(_fields(value)).get(8)))
        elif field == 11:
            inputs.append(_value_info(value))
        elif field == 12:
            outputs.append(_value_info(value))
    return OnnxSignature(metadata, tuple(v for v in inputs if v.name not in initializers), tuple(outputs))


def _value_info(buf: memoryview) -> GraphValue:
    fields = dict(_fields(buf))
    name = _text(fields.get(1))
    tensor = _message(_message(fields.get(2)).get(1))  # TypeProto.tensor_type
    elem = tensor.get(1)
    dtype = _ELEM_TYPES.get(elem, f"onnx type {elem}") if isinstance(elem, int) else "unknown"
    dims: list[int | None] = []
    shape = tensor.get(2)
    if isinstance(shape, memoryview):
        for field, dim in _fields(shape):
            if field == 1 and isinstance(dim, memoryview):
                size = dict(_fields(dim)).get(1)
                dims.append(size if isinstance(size, int) and size > 0 else None)
    return GraphValue(name, dtype, tuple(dims))


def _message(value: int | memoryview | None) -> dict[int, int | memoryview]:
    return dict(_fields(value)) if isinstance(value, memoryview) else {}


def _text(value: int | memoryview | None) -> str:
    return bytes(value).decode("utf-8") if isinstance(value, memoryview) else ""


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """``(field number, value)`` of each field: an int for varints, a view for bytes/messages."""
    position, end = 0, len(buf)
    while position < end:
        key, position = _varint(buf, position)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, position = _varint(buf, position)
            yield field, value
        elif wire == _BYTES:
            length, position = _varint(buf, position)
            if position + length > end:
                raise ValueError(f"field {field} runs past the end of its message")
            yield field, buf[position:position + length]
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {field})")


def _varint(buf: memoryview, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")
