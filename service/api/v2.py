"""The Open Inference Protocol (KServe v2) over HTTP, with the binary tensor data extension.

Health, server and model metadata, readiness, and ``infer`` with JSON tensors or binary
tensors (``Inference-Header-Content-Length`` gives the JSON header's length; the rest of the
body is the concatenated raw tensors, ``parameters.binary_data_size`` bytes each). The official
``tritonclient.http`` client works against these routes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import Response

from service.api.bodies import (
    JSON,
    MAX_ARRAY_RANK,
    OCTET,
    Body,
    body_limit,
    declared_length,
    json_response,
    off_loop,
    parse_json,
    read_body,
    require_media_type,
    unless_client_leaves,
)
from service.api.routing import Call
from service.api.tfserving import example_instance
from service.classification import class_count, top_classes
from service.contract import NO_LIMITS, InputContract, InputLimits
from service.dataplane import DataPlane
from service.errors import DtypeError, MalformedRequestError, ShapeMismatchError
from service.registry import ModelVersion

HEADER_LENGTH = "Inference-Header-Content-Length"
# Open Inference Protocol datatypes -> NumPy dtypes accepted for the (float32) input.
NUMERIC_DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(kind) for name, kind in {
        "FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT8": "i1", "INT16": "<i2", "INT32": "<i4",
        "INT64": "<i8", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8"}.items()}


async def server_metadata(call: Call) -> Response:
    """Server name, version and protocol extensions."""
    return json_response(call.plane.server_metadata())


async def live(call: Call) -> Response:
    """200 while the process runs."""
    return json_response({"live": True})


async def ready(call: Call) -> Response:
    """200 when at least one model can serve and the server is not shutting down, else 503."""
    return json_response({"ready": call.plane.ready}, status_code=200 if call.plane.ready else 503)


async def model_metadata(call: Call) -> Response:
    """Inputs, outputs, versions, execution providers and lc2d metadata of a model."""
    assert call.name is not None
    return json_response(call.plane.model_metadata(call.name, call.version))


async def model_ready(call: Call) -> Response:
    """200 when the model (version) can serve, 503 when it cannot, 404 when unknown."""
    assert call.name is not None
    item = call.plane.find(call.name, call.version)
    return json_response({"name": item.name, "version": item.version, "ready": item.ready},
                         status_code=200 if item.ready else 503)


async def infer(call: Call) -> Response:
    """Runs inference on JSON tensors or binary tensors (``Inference-Header-Content-Length``).

    ``?version=V`` (as tritonclient.http's ``query_params`` sends it) names the version like the
    ``/versions/{version}`` path does.
    """
    assert call.name is not None
    async with call.plane.serving(call.name, query_version(call)) as item:
        return await _infer(call, item)


async def _infer(call: Call, item: ModelVersion) -> Response:
    request = call.request
    require_media_type(request, (JSON, OCTET), "v2")
    header_length = request.headers.get(HEADER_LENGTH)
    limit = body_limit(call.plane.settings, JSON if header_length is None else OCTET)
    call.plane.admit(item)
    body = await read_body(request, limit)
    parsed = await off_loop(len(body), parse_infer_body, body, header_length, item.contract, item.limits)
    outputs = await unless_client_leaves(request, call.plane.infer(item, parsed.batch))
    return infer_response(item, outputs, parsed)


def query_version(call: Call) -> str | None:
    """The version of the path or of ``?version=``; 400 when they differ, or for other parameters."""
    query = call.request.query_params
    unknown = sorted(set(query) - {"version"})
    if unknown:
        raise MalformedRequestError(f"unknown query parameters {unknown}, expected none or ['version']",
                                    expected=["version"], received=unknown)
    asked = query.getlist("version")
    if len(asked) > 1 or (asked and call.version is not None and asked[0] != call.version):
        raise MalformedRequestError(f"the request names versions {[call.version, *asked]}, expected one "
                                    f"(in the path or in ?version=)", expected="one version",
                                    received=[v for v in (call.version, *asked) if v is not None])
    return asked[0] if asked else call.version


def infer_request_docs(plane: DataPlane) -> dict[str, Any]:
    """The OpenAPI request body of ``infer``, with a tensor shaped like the default model's input."""
    name, instance = example_instance(plane)
    body = {"inputs": [{"name": name, "shape": [1, *np.shape(instance)], "datatype": "FP32",
                        "data": np.ravel(instance).tolist()}]}
    return {"requestBody": {"required": True, "content": {
        JSON: {"schema": {"type": "object"}, "examples": {"JSON tensor": {"value": body}}},
        OCTET: {"schema": {"type": "string", "format": "binary"}}}}}


@dataclass(frozen=True)
class InferRequest:
    """A parsed ``infer`` request: the batch and how the outputs are wanted."""

    batch: np.ndarray
    request_id: str | None
    outputs: list[str]
    binary_outputs: set[str]
    classes: dict[str, int] = field(default_factory=dict)
    """Output name -> k, for outputs asked as top-k classes (the classification extension)."""


def parse_infer_body(body: Body, header_length: str | None, contract: InputContract,
                     limits: InputLimits = NO_LIMITS) -> InferRequest:
    """Decodes and validates an ``infer`` body (JSON, or JSON header plus binary tensors)."""
    header, binary = split_body(body, header_length)
    return parse_infer_request(parse_json(header), binary, contract, limits)


def split_body(body: Body, header_length: str | None) -> tuple[Body, Body | memoryview]:
    """Splits a binary-extension body into its JSON header and its raw tensor bytes."""
    length = declared_length(header_length, HEADER_LENGTH)
    if length is None:
        return body, b""
    if length > len(body):
        raise MalformedRequestError(
            f"{HEADER_LENGTH} must be an integer between 0 and the body size {len(body)}, "
            f"received {header_length!r}", expected=f"0..{len(body)}", received=header_length)
    return body[:length], memoryview(body)[length:]


def parse_infer_request(payload: Any, binary: Body | memoryview, contract: InputContract,
                        limits: InputLimits = NO_LIMITS) -> InferRequest:
    """Validates an ``infer`` JSON header (and its binary tensors) against the model's contract."""
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise MalformedRequestError('expected a JSON object with an "inputs" list', expected="inputs")
    tensors = payload["inputs"]
    check_input_names([t.get("name") if isinstance(t, dict) else None for t in tensors], contract)
    array = _tensor_array(tensors[0], binary)
    batch = contract.validate_batch(array, limits)
    parameters = _parameters(payload, "the request")
    return InferRequest(batch, _request_id(payload), *_requested_outputs(payload, contract, parameters))


def infer_response(item: ModelVersion, outputs: dict[str, np.ndarray], parsed: InferRequest) -> Response:
    """JSON tensors, or a JSON header followed by raw bytes for outputs asked as binary."""
    entries: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name in parsed.outputs:
        if name in parsed.classes:
            classes = top_classes(outputs[name], parsed.classes[name], item.contract.labels, name)
            entry, raw = _bytes_entry(name, classes, name in parsed.binary_outputs)
        else:
            entry, raw = _fp32_entry(name, outputs[name], name in parsed.binary_outputs)
        if raw is not None:
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": item.name, "model_version": item.version, "outputs": entries}
    if parsed.request_id is not None:
        answer["id"] = parsed.request_id
    if not chunks:
        return json_response(answer)
    header = json_response(answer).body
    return Response(bytes(header) + b"".join(chunks), media_type=OCTET,
                    headers={HEADER_LENGTH: str(len(header))})


def check_input_names(names: list[Any], contract: InputContract) -> None:
    """Refuses (400) anything but exactly one input named as the model's input (both front doors)."""
    if names != [contract.input_name]:
        raise MalformedRequestError(f"expected exactly one input named {contract.input_name!r}, "
                                    f"received {names}", expected=[contract.input_name], received=names)


def tensor_dtype(shape: Any, datatype: Any) -> np.dtype[Any]:
    """The NumPy dtype of an input tensor's datatype, after checking its shape (both front doors).

    Raises:
        MalformedRequestError: the shape is not a list of at most ``MAX_ARRAY_RANK`` non-negative
            integers (400).
        DtypeError: a datatype that cannot become FP32 (422).
    """
    if (not isinstance(shape, list) or len(shape) > MAX_ARRAY_RANK
            or not all(type(d) is int and 0 <= d < 2**63 for d in shape)):  # type(): True is an int
        raise MalformedRequestError(f"expected input shape as a list of at most {MAX_ARRAY_RANK} "
                                    f"non-negative integers, received {_short(shape)}",
                                    expected="list of integers", received=_short(shape))
    if not isinstance(datatype, str) or datatype not in NUMERIC_DATATYPES:
        raise DtypeError(f"input datatype {_short(datatype)} cannot become FP32, expected one of "
                         f"{sorted(NUMERIC_DATATYPES)}", expected="FP32", received=_short(datatype))
    return NUMERIC_DATATYPES[datatype]


def _fp32_entry(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    value = np.ascontiguousarray(array, dtype="<f4")
    entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(value.shape)}
    if binary:
        return entry, value.tobytes()
    entry["data"] = value.ravel().tolist()
    return entry, None


def _bytes_entry(name: str, array: np.ndarray, binary: bool) -> tuple[dict[str, Any], bytes | None]:
    """A BYTES tensor: JSON strings, or binary as 4-byte little-endian length + bytes per element."""
    elements = [bytes(e) for e in array.ravel()]
    entry: dict[str, Any] = {"name": name, "datatype": "BYTES", "shape": list(array.shape)}
    if binary:
        return entry, b"".join(struct.pack("<I", len(e)) + e for e in elements)
    entry["data"] = [e.decode() for e in elements]
    return entry, None


def _tensor_array(tensor: dict[str, Any], binary: Body | memoryview) -> np.ndarray:
    shape: Any = tensor.get("shape")
    datatype = tensor.get("datatype")
    dtype = tensor_dtype(shape, datatype)
    count = math.prod(shape)  # a Python int: no overflow, however large the claim
    parameters = _parameters(tensor, "the input")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if type(size) is not int or size != count * dtype.itemsize or size > len(binary):
            raise MalformedRequestError(
                f"binary input has binary_data_size {_short(size)} with {len(binary)} bytes after the "
                f"header, expected {count * dtype.itemsize} bytes for shape {shape} of {datatype}",
                expected=count * dtype.itemsize, received=_short(size))
        if "data" in tensor:  # which values should run? neither: as gRPC refuses raw and typed together
            raise MalformedRequestError('the input has both "data" and parameters.binary_data_size, '
                                        'expected one of them', expected="data or binary_data_size",
                                        received=["data", "binary_data_size"])
        return reshaped(np.frombuffer(binary[:size], dtype=dtype), shape)
    if "data" not in tensor:
        raise MalformedRequestError('expected the input to have "data" or parameters.binary_data_size',
                                    expected="data")
    data = np.asarray(tensor["data"]) if _is_numeric_list(tensor["data"]) else None
    if data is None:
        raise DtypeError(f"input data of datatype {datatype} must be numbers", expected=datatype,
                         received="non-numeric data")
    if data.size != count:
        raise ShapeMismatchError(f"input data has {data.size} values, expected {count} for shape {shape}",
                                 expected=count, received=int(data.size))
    check_value_range(data, dtype, str(datatype))
    return reshaped(data, shape)


def check_value_range(values: np.ndarray, dtype: np.dtype[Any], datatype: str) -> None:
    """Refuses (422) values an integer datatype cannot hold (both front doors): ``INT8`` data of
    1000 is a client's mistake, not the number 1000 nor -24 (what a cast would wrap it to)."""
    if dtype.kind not in "iu" or values.size == 0:
        return
    info = np.iinfo(dtype)
    low, high = values.min(), values.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise DtypeError(f"input values of datatype {datatype} must lie in [{info.min}, {info.max}], "
                         f"received {bad}", expected=f"[{info.min}, {info.max}]", received=str(bad))


def reshaped(data: np.ndarray, shape: list[int]) -> np.ndarray:
    """``data`` in ``shape``, or 422 when NumPy cannot build that shape (a zero-sized shape whose
    other dimensions it cannot index)."""
    try:
        return data.reshape(shape)
    except ValueError as err:
        raise ShapeMismatchError(f"input shape {shape} cannot be built: {err}", expected="a valid shape",
                                 received=shape) from err


def _is_numeric_list(data: Any) -> bool:
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        return False
    return array.dtype.kind in "fiu"


def _parameters(owner: dict[str, Any], where: str) -> dict[str, Any]:
    """The ``parameters`` object of a request, tensor or output (absent or null: empty), or 400."""
    parameters = owner.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise MalformedRequestError(f"expected the parameters of {where} to be an object, received "
                                    f"{type(parameters).__name__}", expected="object",
                                    received=type(parameters).__name__)
    for flag in ("binary_data", "binary_data_output"):
        if flag in parameters and type(parameters[flag]) is not bool:
            raise MalformedRequestError(f"expected parameter {flag} of {where} to be true or false, "
                                        f"received {_short(parameters[flag])}", expected="boolean",
                                        received=_short(parameters[flag]))
    return parameters


def _short(value: Any) -> str:
    """A value as a client sent it, cut to 80 characters for messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _requested_outputs(payload: dict[str, Any], contract: InputContract,
                       parameters: dict[str, Any]) -> tuple[list[str], set[str], dict[str, int]]:
    binary_default = bool(parameters.get("binary_data_output", False))
    requested = payload.get("outputs")
    if not requested:
        names = list(contract.output_names)
        return names, set(names) if binary_default else set(), {}
    if not isinstance(requested, list) or not all(isinstance(o, dict) for o in requested):
        raise MalformedRequestError('expected "outputs" to be a list of objects', expected="list")
    names = [o.get("name") for o in requested]
    check_output_names(names, contract)
    options = {o["name"]: _parameters(o, f"output {o['name']!r}") for o in requested}
    binary = {name for name, p in options.items() if p.get("binary_data", binary_default)}
    classes = {name: k for name, p in options.items() if (k := class_count(p, name)) is not None}
    return [str(n) for n in names], binary, classes


def check_output_names(names: list[Any], contract: InputContract) -> None:
    """Refuses (400) requested outputs the model does not have (both front doors)."""
    unknown = [n if isinstance(n, str) else _short(n) for n in names
               if not isinstance(n, str) or n not in contract.output_names]
    if unknown:
        raise MalformedRequestError(f"unknown outputs {unknown}, expected names among "
                                    f"{list(contract.output_names)}",
                                    expected=list(contract.output_names), received=unknown)


def _request_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("id")
    if value is None or isinstance(value, str):
        return value
    raise MalformedRequestError(f"expected the request id to be a string, received {_short(value)}",
                                expected="string", received=_short(value))
