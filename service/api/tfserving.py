"""TensorFlow Serving's REST predict API: ``POST /predict`` and ``/v1/models/{name}:predict``.

``{"instances": [instance, ...]}`` (row format) answers ``{"predictions": [row, ...]}``;
``{"inputs": batch}`` (columnar format) answers ``{"outputs": batch}``. With several outputs a
row is ``{output_name: value}``, as TensorFlow Serving does. When the model has labels the
answer also has ``"labels"``: the top label of each instance (from its first output). An
``application/x-npy`` body holds the batch (batch axis first); ``Accept: application/x-npy``
answers the first output as ``.npy``.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
from fastapi import Response

from service.api.bodies import (
    JSON,
    NPY,
    Body,
    body_limit,
    json_response,
    npy_response,
    off_loop,
    parse_json,
    parse_npy,
    preferred_response,
    read_body,
    require_media_type,
    unless_client_leaves,
)
from service.api.routing import Call
from service.contract import NO_LIMITS, InputContract, InputLimits
from service.dataplane import DataPlane
from service.errors import MalformedRequestError, ModelNotFoundError
from service.registry import ModelVersion
from service.scoring.errors import ScoringInputError
from service.scoring.images import ImageLayout, read_image

LABELS = ("stable", "canary")
"""Version labels every model has unless its configuration maps them: see :func:`label_version`."""
SIGNATURE = "serving_default"
"""The one signature every model has (TensorFlow Serving's default signature name)."""


def requested_version(call: Call) -> str | None:
    """The version a TensorFlow Serving route names: ``{version}``, or a ``{label}``, or none."""
    label = call.params.get("label")
    if label is None:
        return call.version
    return label_version(call.plane, call.name, label)


def label_version(plane: DataPlane, name: str | None, label: str) -> str:
    """The version a label names: the model configuration's ``labels`` first; otherwise
    ``stable`` is the version requests without a version go to (the model's
    ``default_version``, else the highest ready one) and ``canary`` the highest ready version.

    The version is returned whether or not it is loaded: the caller looks it up as it looks up
    ``/versions/{v}`` (404 when the model has no such version, 503 while it is not ready).

    Raises:
        ModelNotFoundError: unknown model, or a label it does not have (404, naming its labels).
    """
    configured = (plane.registry.config(name).labels or {}) if name is not None else {}
    if label in configured:
        return str(configured[label])
    if label not in LABELS:
        known = [*LABELS, *(key for key in configured if key not in LABELS)]
        raise ModelNotFoundError(f"model {name!r} has no version label {label!r}; labels: {known}",
                                 expected=known, received=label)
    default = plane.find(name).version
    if label == "stable" or name is None:
        return default
    ready = [item.version for item in plane.versions(name).values() if item.ready]
    return max(ready, key=lambda v: (int(v), "") if v.isdigit() else (-1, v)) if ready else default


async def predict(call: Call) -> Response:
    """Runs the instances (JSON) or the batch (JSON ``inputs`` or an ``.npy`` body) through the model.

    ``{"instances": [...]}`` answers ``{"predictions": [...]}``, ``{"inputs": ...}`` answers
    ``{"outputs": ...}``, both with ``"labels"`` when the model has labels. ``Accept:
    application/x-npy`` answers the first output as ``.npy``. ``{"b64": "..."}`` stands for an
    instance: raw little-endian float32 of the instance's shape, or a PNG/JPEG image.
    """
    async with call.plane.serving(call.name, requested_version(call)) as item:
        return await _predict(call, item)


async def _predict(call: Call, item: ModelVersion) -> Response:
    plane, request, contract = call.plane, call.request, item.contract
    kind = require_media_type(request, (JSON, NPY), "tfserving")
    answer_as = preferred_response(request)
    plane.admit(item)
    body = await read_body(request, body_limit(plane.settings, kind))
    batch, columnar = await off_loop(len(body), parse_predict_body, kind, body, contract, item.limits)
    outputs = await unless_client_leaves(request, plane.infer(item, batch))
    headers = {"X-Model-Name": item.name, "X-Model-Version": item.version}
    if answer_as == NPY:
        first = contract.output_names[0]
        return npy_response(outputs[first], headers={**headers, "X-Output-Name": first})
    return json_response(predict_answer(outputs, contract, columnar and kind == JSON), headers=headers)


def parse_predict_body(kind: str, body: Body, contract: InputContract,
                       limits: InputLimits = NO_LIMITS) -> tuple[np.ndarray, bool]:
    """Decodes and validates a predict body of media type ``kind`` (JSON or ``.npy``).

    Returns:
        The float32 batch and whether it came whole (columnar JSON or ``.npy``).
    """
    if kind == NPY:
        return contract.validate_batch(parse_npy(body), limits), True
    return parse_predict_json(parse_json(body), contract, limits)


def predict_request_docs(plane: DataPlane) -> dict[str, Any]:
    """The OpenAPI request body of ``predict``, with an instance shaped like the default model's."""
    _, instance = example_instance(plane)
    schema = {"type": "object", "properties": {
        "instances": {"type": "array", "description": "instances shaped like one model input"},
        "inputs": {"description": "a whole batch, batch axis first (columnar format)"}}}
    return {"requestBody": {"required": True, "content": {
        JSON: {"schema": schema, "examples": {"one instance": {"value": {"instances": [instance]}}}},
        NPY: {"schema": {"type": "string", "format": "binary"}}}}}


def example_instance(plane: DataPlane) -> tuple[str, list[Any]]:
    """The default model's input name and a random instance of its shape (for documentation)."""
    shape: list[int] = [2, 2]
    name = "input"
    if plane.default_model is not None:
        item = plane.find(plane.default_model)
        if item.model is not None:
            shape = [d or 1 for d in item.model.contract.instance_shape]
            name = item.model.contract.input_name
    return name, np.round(np.random.default_rng(0).random(shape), 3).tolist()


def parse_predict_json(payload: Any, contract: InputContract, limits: InputLimits = NO_LIMITS
                       ) -> tuple[np.ndarray, bool]:
    """Validates a TensorFlow Serving JSON body.

    Returns:
        The float32 batch and whether the columnar (``"inputs"``) format was used.

    Raises:
        MalformedRequestError: neither ``instances`` nor ``inputs`` (400).
        InvalidInputError: values that break the contract (422).
    """
    if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
        received = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise MalformedRequestError(
            'expected a JSON object with exactly one of "instances" (a list of instances) or "inputs" '
            f"(a batch), received {received}", expected=["instances", "inputs"], received=received)
    check_signature(payload)
    if "instances" in payload:
        instances = payload["instances"]
        if isinstance(instances, list) and any(isinstance(instance, dict) and not _is_b64(instance)
                                               for instance in instances):
            instances = [_named_input(instance, contract, index) for index, instance in enumerate(instances)]
        return contract.validate_instances(decode_values(instances, contract), limits), False
    inputs = payload["inputs"]
    if isinstance(inputs, dict) and not _is_b64(inputs):
        inputs = _named_input(inputs, contract)
    if isinstance(inputs, list) and any(_is_b64(value) for value in inputs):
        return contract.validate_instances(decode_values(inputs, contract), limits), True
    return contract.validate_batch(inputs, limits), True


def check_signature(payload: dict[str, Any]) -> None:
    """Refuses (400) a ``signature_name`` other than the one every model has."""
    name = payload.get("signature_name")
    if name is not None and name != SIGNATURE:
        raise MalformedRequestError(f"unknown signature_name {name!r}; this model has one signature: "
                                    f"[{SIGNATURE!r}]", expected=[SIGNATURE], received=repr(name))


def decode_values(values: Any, contract: InputContract) -> Any:
    """``values`` with every ``{"b64": "..."}`` instance decoded (other values unchanged).

    The decoded bytes are the instance itself when they are exactly its size as little-endian
    float32; otherwise they must be a PNG or JPEG image, decoded as ``lc2d score`` decodes image
    files (resized, channels converted, ``pixel / 255`` unless the model says otherwise).
    """
    if not isinstance(values, list) or not any(_is_b64(value) for value in values):
        return values
    return [_decode_b64(value["b64"], contract, index) if _is_b64(value) else value
            for index, value in enumerate(values)]


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _decode_b64(text: Any, contract: InputContract, index: int) -> np.ndarray:
    try:
        data = base64.b64decode(text, validate=True) if isinstance(text, str) else None
    except binascii.Error:
        data = None
    if data is None:
        raise MalformedRequestError(f"instance {index}: the b64 value is not base64 text",
                                    expected="base64 string", instance=index)
    shape = contract.instance_shape
    if all(d is not None for d in shape) and len(data) == 4 * math.prod(int(d or 0) for d in shape):
        return np.frombuffer(data, "<f4").reshape([int(d or 0) for d in shape])
    raw_size = 4 * math.prod(int(d or 0) for d in shape) if all(d is not None for d in shape) else None
    try:
        layout = ImageLayout.from_contract(contract)
        return read_image(io.BytesIO(data), layout, name=f"instance {index}'s b64 value")
    except ScoringInputError as err:
        raise MalformedRequestError(
            f"instance {index}: the b64 value has {len(data)} bytes: expected {raw_size} bytes (float32 of "
            f"shape {list(shape)}) or a PNG/JPEG image for this model ({err.message})",
            expected=raw_size, received=len(data), instance=index) from err


def predict_answer(outputs: dict[str, np.ndarray], contract: InputContract, columnar: bool) -> dict[str, Any]:
    """The TensorFlow Serving answer for one request's outputs (plus top labels when known)."""
    names = list(contract.output_names)
    if columnar:
        answer: dict[str, Any] = {"outputs": outputs[names[0]].tolist() if len(names) == 1
                                  else {name: outputs[name].tolist() for name in names}}
    elif len(names) == 1:  # the array itself: json_response writes it as nested lists
        answer = {"predictions": np.ascontiguousarray(outputs[names[0]])}
    else:
        per_output = {name: outputs[name].tolist() for name in names}
        rows = len(outputs[names[0]])
        answer = {"predictions": [{name: per_output[name][i] for name in names} for i in range(rows)]}
    if contract.labels:
        answer["labels"] = top_labels(outputs[names[0]], contract.labels)
    return answer


def top_labels(scores: np.ndarray, labels: tuple[str, ...]) -> list[str]:
    """The label of the highest score of each row (scores must have one column per label)."""
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        return []
    return [labels[i] for i in np.argmax(scores, axis=1)]


def _named_input(instance: Any, contract: InputContract, index: int | None = None) -> Any:
    if not isinstance(instance, dict):  # named instances must all be named
        raise MalformedRequestError(
            f"instance {index} is {type(instance).__name__}, expected an object {{{contract.input_name!r}: "
            "value}} like the other instances", expected="object", received=type(instance).__name__,
            instance=index)
    if set(instance) != {contract.input_name}:
        raise MalformedRequestError(
            f"expected inputs named {[contract.input_name]}, received {sorted(instance)}",
            expected=[contract.input_name], received=sorted(instance))
    return instance[contract.input_name]
