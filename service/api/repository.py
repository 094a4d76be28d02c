"""The repository extension of the Open Inference Protocol, as Triton serves it, and statistics.

``POST /v2/repository/index`` lists every model version with its state and reason;
``POST /v2/repository/models/{name}/load`` (optionally with a configuration in the body) and
``/unload`` change what is served (``--model-control-mode explicit``);
``GET /v2/models/{name}/config`` shows the configuration a model is served with and
``GET /v2/models[/{name}[/versions/{version}]]/stats`` its inference statistics. The bodies
are those ``tritonclient``'s ``get_model_repository_index``, ``load_model``, ``unload_model``,
``get_model_config`` and ``get_inference_statistics`` send and read. The model registry
(``service.registry``) does the work; these endpoints only translate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import Response

from service.api.bodies import json_response, parse_json, read_body
from service.api.routing import Call
from service.errors import InvalidModelConfigError, MalformedRequestError
from service.registry import ModelRegistry

# Repository requests are small JSON objects; the configuration override is the largest part.
CONTROL_BODY_BYTES = 1024 * 1024


async def repository_index(call: Call) -> Response:
    """Every model and version the server knows, with its state and, when not ready, the reason.

    ``{"ready": true}`` in the body lists only the ready versions.
    """
    parameters = await _body(call)
    rows = [row.to_json() for row in call.plane.registry.index()]
    if parameters.get("ready") is True:
        rows = [row for row in rows if row["state"] == "READY"]
    return json_response(rows)


async def load_model(call: Call) -> Response:
    """Loads or reloads a model as its version policy says: new versions are warmed up before they
    take requests, then the versions they replace finish their requests and are unloaded.

    ``{"parameters": {"config": "<JSON object>"}}`` serves it with that configuration instead of its
    config.json (until the next load without one). Needs ``--model-control-mode explicit``.
    """
    assert call.name is not None
    parameters = (await _body(call)).get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise MalformedRequestError('expected "parameters" to be an object',
                                    expected="object", received=type(parameters).__name__)
    registry = call.plane.registry
    await registry.load(call.name, load_override(parameters))
    return json_response(_model_rows(registry, call.name))


def load_override(parameters: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The configuration a load request's parameters ask for (HTTP and gRPC), or None.

    Raises:
        MalformedRequestError: ``file:`` parameters (model files cannot be uploaded) (400).
        InvalidModelConfigError: a ``config`` that is not a JSON object (400).
    """
    files = sorted(key for key in parameters if str(key).startswith("file:"))
    if files:
        raise MalformedRequestError(f"loading model files sent in the request is not supported, received "
                                    f"{files}; put them in the repository and load by name",
                                    expected="no file: parameters", received=files)
    return _config_override(parameters.get("config"))


async def unload_model(call: Call) -> Response:
    """Stops a model taking requests, lets the ones it holds finish, then frees its sessions.
    Needs ``--model-control-mode explicit``."""
    assert call.name is not None
    await _body(call)
    registry = call.plane.registry
    await registry.unload(call.name)
    return json_response(_model_rows(registry, call.name))


async def model_config(call: Call) -> Response:
    """The configuration the model is served with: its config.json over the server's flags."""
    assert call.name is not None
    config = call.plane.registry.config(call.name)
    return json_response({"name": call.name, **config.public()})


async def model_statistics(call: Call) -> Response:
    """Inference statistics per version: successes, failures, queue time and compute time
    (merging the batch, the model run, splitting the outputs), instances and runs."""
    return json_response({"model_stats": call.plane.registry.stats(call.name, call.version)})


async def _body(call: Call) -> dict[str, Any]:
    """The JSON object of a control request; an empty body is an empty object."""
    body = await read_body(call.request, CONTROL_BODY_BYTES)
    if not body.strip():
        return {}
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise MalformedRequestError(f"expected a JSON object, received {type(payload).__name__}",
                                    expected="object", received=type(payload).__name__)
    return payload


def _config_override(config: Any) -> Mapping[str, Any] | None:
    """The ``config`` parameter: a JSON object, or a string holding one (what tritonclient sends)."""
    if config is None or isinstance(config, Mapping):
        return config
    if not isinstance(config, str):
        raise InvalidModelConfigError(f"expected the config parameter to be a JSON object or a string "
                                      f"holding one, received {type(config).__name__}",
                                      expected="object", received=type(config).__name__)
    try:
        parsed = json.loads(config)
    except RecursionError as err:
        raise InvalidModelConfigError("the config parameter is JSON nested too deeply to read",
                                      expected="JSON object", received=config[:200]) from err
    except ValueError as err:  # not JSON, or an integer of more than 4,300 digits
        raise InvalidModelConfigError(f"the config parameter is not valid JSON: {err}",
                                      expected="JSON object", received=config[:200]) from err
    if not isinstance(parsed, Mapping):
        raise InvalidModelConfigError(f"expected the config parameter to hold a JSON object, received "
                                      f"{type(parsed).__name__}", expected="object",
                                      received=type(parsed).__name__)
    return parsed


def _model_rows(registry: ModelRegistry, name: str) -> dict[str, Any]:
    return {"name": name, "versions": [row.to_json() for row in registry.index() if row.name == name]}

