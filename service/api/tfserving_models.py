"""TensorFlow Serving's REST API beyond predict: model status, metadata, classify, regress, labels.

Formats follow TensorFlow Serving's ``api_rest.md``:

- ``GET /v1/models/{name}[/versions/{v} | /labels/{l}]``: ``{"model_version_status": [{"version",
  "state" (LOADING, AVAILABLE, UNLOADING, END), "status": {"error_code", "error_message"}}]}``;
- ``GET .../metadata``: ``{"model_spec", "metadata": {"signature_def": {"signature_def":
  {"serving_default": {"inputs", "outputs", "method_name"}}}}}`` with TensorFlow dtypes and shapes;
- ``POST ...:classify``: ``{"examples": [{input: value}, ...], "context": {...}}`` answers
  ``{"result": [[[label, score], ...], ...]}``, every class highest first, for a model whose
  only output is one score per class; ``POST ...:regress`` answers ``{"result": [value, ...]}``
  for a model whose only output is one value per example. Other models get 400.

Version labels: the ``labels`` of the model's ``config.json``; without them ``stable`` is the
version requests without a version go to and ``canary`` the highest ready version; other
labels are 404 (:func:`service.api.tfserving.label_version`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Response

from service.api.bodies import (
    JSON,
    body_limit,
    json_response,
    off_loop,
    parse_json,
    read_body,
    require_media_type,
)
from service.api.routing import Call
from service.api.tfserving import SIGNATURE, check_signature, decode_values, requested_version
from service.contract import InputContract, InputLimits, TensorSpec
from service.errors import MalformedRequestError
from service.registry import ModelVersion, VersionState

_STATES = {VersionState.LOADING: "LOADING", VersionState.WARMING: "LOADING", VersionState.READY: "AVAILABLE",
           VersionState.DRAINING: "UNLOADING", VersionState.UNLOADED: "END", VersionState.FAILED: "END"}
_DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int64": "DT_INT64",
           "int32": "DT_INT32", "uint8": "DT_UINT8"}


async def model_status(call: Call) -> Response:
    """TensorFlow Serving model status: the state of every version (or of the one named)."""
    assert call.name is not None
    version = requested_version(call)
    items = [call.plane.find(call.name, version)] if version is not None \
        else list(call.plane.versions(call.name).values())
    return json_response({"model_version_status": [_status(item) for item in items]})


async def model_metadata(call: Call) -> Response:
    """TensorFlow Serving model metadata: the ``serving_default`` signature's inputs and outputs."""
    assert call.name is not None
    item = call.plane.find_ready(call.name, requested_version(call))
    contract = item.contract
    signature = {"inputs": {contract.input_name: _tensor_info(contract.input_name, contract.dtype,
                                                                contract.instance_shape)},
                 "outputs": {spec.name: _tensor_info(spec.name, spec.dtype, spec.instance_shape)
                             for spec in contract.outputs},
                 "method_name": "tensorflow/serving/predict"}
    return json_response({"model_spec": {"name": item.name, "signature_name": "", "version": item.version},
                          "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}}})


async def classify(call: Call) -> Response:
    """Top classes with labels and scores for each example (models with one score per class)."""
    async with call.plane.serving(call.name, requested_version(call)) as item:
        output = _only_output(item.contract, "classify",
                              lambda shape: len(shape) == 1 and (shape[0] or 0) >= 2,
                              "one score per class, shape [N, classes]")
        scores = await _run_examples(call, item)
        labels = item.contract.labels if item.contract.labels and len(item.contract.labels) == scores[
            output].shape[1] else tuple(str(i) for i in range(scores[output].shape[1]))
        results = [[[labels[i], float(row[i])] for i in np.argsort(-row, kind="stable")]
                   for row in scores[output]]
        return json_response({"result": results})


async def regress(call: Call) -> Response:
    """One value per example (models whose only output is one value per example)."""
    async with call.plane.serving(call.name, requested_version(call)) as item:
        output = _only_output(item.contract, "regress", lambda shape: tuple(shape) in ((), (1,)),
                              "one value per example, shape [N] or [N, 1]")
        values = await _run_examples(call, item)
        return json_response({"result": np.asarray(values[output], np.float64).reshape(-1).tolist()})


async def _run_examples(call: Call, item: ModelVersion) -> dict[str, np.ndarray]:
    request = call.request
    require_media_type(request, (JSON,), "tfserving")
    body = await read_body(request, body_limit(call.plane.settings, JSON))
    batch = await off_loop(len(body), parse_examples, body, item.contract, item.limits)
    return await call.plane.infer(item, batch)


def parse_examples(body: Any, contract: InputContract, limits: InputLimits) -> np.ndarray:
    """Validates a classify/regress body: ``examples`` (each ``{input: value}``) plus ``context``.

    Context features go into every example, as in TensorFlow Serving.
    """
    payload = parse_json(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("examples"), list):
        received = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise MalformedRequestError(f'expected a JSON object with an "examples" list, received {received}',
                                    expected="examples", received=received)
    check_signature(payload)
    context = payload.get("context") or {}
    if not isinstance(context, dict):
        raise MalformedRequestError("expected context to be an object of features",
                                    expected="object", received=type(context).__name__)
    instances = []
    for index, example in enumerate(payload["examples"]):
        features = {**context, **example} if isinstance(example, dict) else example
        if not isinstance(features, dict) or set(features) != {contract.input_name}:
            received = sorted(features) if isinstance(features, dict) else type(features).__name__
            raise MalformedRequestError(
                f"example {index} must have exactly the feature {contract.input_name!r} (with the context), "
                f"received {received}", expected=[contract.input_name], received=received, instance=index)
        instances.append(features[contract.input_name])
    return contract.validate_instances(decode_values(instances, contract), limits)


def _only_output(contract: InputContract, verb: str, fits: Any, wanted: str) -> str:
    specs: tuple[TensorSpec, ...] = contract.outputs
    if len(specs) != 1 or not fits(specs[0].instance_shape):
        shapes = {spec.name: ["N", *spec.instance_shape] for spec in specs}
        raise MalformedRequestError(f"{verb} needs a model with one output of {wanted}; this model's outputs "
                                    f"are {shapes}: use predict", expected=wanted, received=shapes)
    return specs[0].name


def _status(item: ModelVersion) -> dict[str, Any]:
    failed = item.state is VersionState.FAILED
    return {"version": item.version, "state": _STATES.get(item.state, "UNKNOWN"),
            "status": {"error_code": "UNKNOWN" if failed else "OK",
                       "error_message": item.reason if failed else ""}}


def _tensor_info(name: str, dtype: str, instance_shape: tuple[int | None, ...]) -> dict[str, Any]:
    dims = [{"size": "-1", "name": ""}] + [{"size": str(-1 if d is None else d), "name": ""}
                                           for d in instance_shape]
    return {"dtype": _DTYPES.get(dtype, "DT_INVALID"), "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": name}
