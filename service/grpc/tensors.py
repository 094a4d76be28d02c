"""Open Inference Protocol tensors over gRPC <-> NumPy arrays.

An input arrives either typed (``contents.<kind>_contents``, the field chosen by the datatype)
or raw (``raw_input_contents[i]``: little-endian bytes in row-major order). Outputs go back in
the form the request used: raw when it sent raw inputs, typed otherwise. ``BYTES`` tensors (the
classification extension) are typed ``bytes_contents`` or, raw, each element as a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from service.api.v2 import tensor_dtype
from service.errors import DtypeError, MalformedRequestError, ShapeMismatchError
from service.grpc import inference_pb2 as pb

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
    "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
"""Datatype -> the ``InferTensorContents`` field that holds its typed values (FP16: raw only)."""


def input_array(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """The array of one input tensor, from its raw bytes when given, else from its typed contents.

    Raises:
        MalformedRequestError: values missing, or raw bytes that do not fit the shape (400).
        DtypeError: a datatype that cannot become FP32, or values in the wrong field (422).
        ShapeMismatchError: a number of typed values that does not fit the shape (422).
    """
    shape = [int(d) for d in tensor.shape]
    dtype = tensor_dtype(shape, tensor.datatype)
    count = int(np.prod(shape))
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise MalformedRequestError(
                f"raw input {tensor.name!r} has {len(raw)} bytes, expected {count * dtype.itemsize} bytes "
                f"for shape {shape} of {tensor.datatype}", expected=count * dtype.itemsize, received=len(raw))
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
    field = CONTENTS_FIELD.get(tensor.datatype)
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    if field is None or filled != [field]:
        raise DtypeError(
            f"input {tensor.name!r} of datatype {tensor.datatype} expects its values in contents.{field} "
            f"(or raw_input_contents), received {filled or 'no values'}",
            expected=field or "raw_input_contents", received=filled)
    values = np.asarray(getattr(tensor.contents, field), dtype=dtype)
    if values.size != count:
        raise ShapeMismatchError(f"input data has {values.size} values, expected {count} for shape {shape}",
                                 expected=count, received=int(values.size))
    return values.reshape(shape)


def request_arrays(request: pb.ModelInferRequest) -> list[np.ndarray]:
    """Every input of a request, raw or typed (not both).

    Raises:
        MalformedRequestError: ``raw_input_contents`` not one entry per input (400).
    """
    raw = list(request.raw_input_contents)
    if not raw:
        return [input_array(tensor, None) for tensor in request.inputs]
    if len(raw) != len(request.inputs):
        raise MalformedRequestError(
            f"raw_input_contents has {len(raw)} entries, expected one per input ({len(request.inputs)})",
            expected=len(request.inputs), received=len(raw))
    return [input_array(tensor, data) for tensor, data in zip(request.inputs, raw, strict=True)]


def add_output(response: pb.ModelInferResponse, name: str, array: np.ndarray, raw: bool) -> None:
    """Appends an output: FP32 for numbers, BYTES for an object array of bytes."""
    tensor = response.outputs.add(name=name, shape=array.shape)
    if array.dtype == object:
        tensor.datatype = "BYTES"
        elements = [bytes(e) for e in array.ravel()]
        if raw:
            response.raw_output_contents.append(b"".join(struct.pack("<I", len(e)) + e for e in elements))
        else:
            tensor.contents.bytes_contents.extend(elements)
        return
    tensor.datatype = "FP32"
    values = np.ascontiguousarray(array, dtype="<f4")
    if raw:
        response.raw_output_contents.append(values.tobytes())
    else:
        tensor.contents.fp32_contents.extend(values.ravel())


def parameter_value(parameter: pb.InferParameter) -> Any:
    """The Python value of an ``InferParameter`` (None when unset)."""
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)
