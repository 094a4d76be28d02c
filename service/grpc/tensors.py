"""Open Inference Protocol tensors over gRPC <-> NumPy arrays.

An input arrives either typed (``contents.<kind>_contents``, the field chosen by the datatype)
or raw (``raw_input_contents[i]``: little-endian bytes in row-major order). Outputs go back in
the form the request used: raw when it sent raw inputs, typed otherwise. ``BYTES`` tensors (the
classification extension) are typed ``bytes_contents`` or, raw, each element as a 4-byte
little-endian length followed by its bytes.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service.api.v2 import check_value_range, reshaped, tensor_dtype
from service.errors import DtypeError, MalformedRequestError, ShapeMismatchError
from service.grpc import inference_pb2 as pb

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
    "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
"""Datatype -> the ``InferTensorContents`` field that holds its typed values (FP16: raw only)."""
_FIELD_DTYPES: dict[str, type[np.generic]] = {
    "bool_contents": np.bool_, "int_contents": np.int32, "int64_contents": np.int64,
    "uint_contents": np.uint32, "uint64_contents": np.uint64, "fp32_contents": np.float32,
    "fp64_contents": np.float64, "bytes_contents": np.object_,
}
"""The NumPy dtype of each typed field, as wide as the protobuf type (``int_contents`` is int32)."""


def input_array(tensor: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> np.ndarray:
    """The array of one input tensor, from its raw bytes when given, else from its typed contents.

    Raises:
        MalformedRequestError: a shape that is not a list of non-negative integers, values
            missing, raw bytes that do not fit the shape, or both raw bytes and typed contents (400).
        DtypeError: a datatype that cannot become FP32, values in the wrong field, or values its
            datatype cannot hold (``INT8`` contents of 1000) (422).
        ShapeMismatchError: a number of typed values that does not fit the shape (422).
    """
    shape = [int(d) for d in tensor.shape]
    dtype = tensor_dtype(shape, tensor.datatype)
    count = math.prod(shape)  # a Python int: a product beyond int64 is a number, not a wrapped one
    filled = [f.name for f, _ in tensor.contents.ListFields()]
    if raw is not None:
        if filled:
            raise MalformedRequestError(
                f"input {tensor.name!r} has both raw_input_contents and contents.{filled[0]}, expected "
                f"one of them", expected="raw_input_contents or contents", received=filled)
        if len(raw) != count * dtype.itemsize:
            raise MalformedRequestError(
                f"raw input {tensor.name!r} has {len(raw)} bytes, expected {count * dtype.itemsize} bytes "
                f"for shape {shape} of {tensor.datatype}", expected=count * dtype.itemsize, received=len(raw))
        return reshaped(np.frombuffer(raw, dtype=dtype), shape)
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None or filled != [field]:
        raise DtypeError(
            f"input {tensor.name!r} of datatype {tensor.datatype} expects its values in contents.{field} "
            f"(or raw_input_contents), received {filled or 'no values'}",
            expected=field or "raw_input_contents", received=filled)
    # read at the field's own width, so that a value the datatype cannot hold is refused, not wrapped
    values = np.asarray(getattr(tensor.contents, field), dtype=_FIELD_DTYPES[field])
    if values.size != count:
        raise ShapeMismatchError(f"input data has {values.size} values, expected {count} for shape {shape}",
                                 expected=count, received=int(values.size))
    check_value_range(values, dtype, tensor.datatype)
    return reshaped(values.astype(dtype, copy=False), shape)


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
