"""The OpenAPI document of a real server: every route's answers documented, and true.

Loaded from ``/openapi.json`` of a running ``lc2d serve``; real answers are checked against the
schemas it names (the pydantic models of service/api/schemas.py forbid undocumented fields).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from service.api import schemas
from service.api.routes import ROUTES
from service.api.routing import ErrorBody

ERROR_REF = "#/components/schemas/ErrorBody"


@pytest.fixture(scope="module")
def openapi(live_server) -> dict[str, Any]:
    with urllib.request.urlopen(live_server.url + "/openapi.json", timeout=10) as answer:
        return json.loads(answer.read())


def request(url: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, headers={"content-type": "application/json",
                                                                 **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_every_route_documents_its_200_and_no_fastapi_validation_error(openapi) -> None:
    assert "HTTPValidationError" not in json.dumps(openapi)
    for route in ROUTES:
        if not route.include_in_schema:
            continue
        answers = openapi["paths"][route.path][route.method.lower()]["responses"]
        content = answers["200"]["content"]
        assert content and all(entry.get("schema") for entry in content.values()), route.path
        if route.ok is not None:
            assert content["application/json"]["schema"]["$ref"].endswith("/" + route.ok.__name__)


def test_error_statuses_are_documented_with_the_error_body(openapi) -> None:
    predict = openapi["paths"]["/v1/models/{name}:predict"]["post"]["responses"]
    for status in ("400", "404", "406", "413", "415", "422", "503", "504"):
        assert predict[status]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, status
    assert "shape_mismatch" in predict["422"]["description"]
    infer = openapi["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert {"400", "404", "413", "415", "422", "503", "504"} <= set(infer) and "406" not in infer
    ready = openapi["paths"]["/v2/models/{name}/ready"]["get"]["responses"]
    assert ready["404"]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF
    assert ready["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/ModelReadiness")
    assert openapi["paths"]["/v2/models/{name}"]["get"]["parameters"][0]["name"] == "name"


def test_real_answers_match_their_documented_schemas(live_server, rng) -> None:
    url = live_server.url
    instance = rng.normal(size=(8, 8, 1)).tolist()
    checks: list[tuple[type, tuple[int, Any]]] = [
        (schemas.ServerMetadata, request(url, "/v2")),
        (schemas.Liveness, request(url, "/v2/health/live")),
        (schemas.Readiness, request(url, "/v2/health/ready")),
        (schemas.Liveness, request(url, "/healthz")),
        (schemas.ModelMetadata, request(url, "/v2/models/tiny")),
        (schemas.ModelReadiness, request(url, "/v2/models/tiny/versions/1/ready")),
        (schemas.PredictResponse, request(url, "/predict", {"instances": [instance]})),
        (schemas.PredictResponse, request(url, "/v1/models/tiny:predict", {"inputs": [instance]})),
        (schemas.InferResponse, request(url, "/v2/models/tiny/infer", {"id": "7", "inputs": [
            {"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
             "data": np.ravel(instance).tolist()}]})),
    ]
    for schema, (status, body) in checks:
        assert status == 200, body
        schema.model_validate(body)


@pytest.mark.parametrize(("template", "path", "body", "status", "code"), [
    ("/predict", "/predict", {"nothing": 1}, 400, "malformed_request"),
    ("/v1/models/{name}:predict", "/v1/models/absent:predict", {"instances": []}, 404, "model_not_found"),
    ("/predict", "/predict", {"instances": [[1.0]]}, 422, "shape_mismatch"),
    ("/v2/models/{name}/infer", "/v2/models/tiny/infer", {"inputs": "x"}, 400, "malformed_request"),
])
def test_real_errors_match_the_error_schema_and_their_documented_status(
        live_server, openapi, template, path, body, status, code) -> None:
    answered, error = request(live_server.url, path, body)
    assert answered == status and error["code"] == code
    ErrorBody.model_validate(error)
    assert str(status) in openapi["paths"][template]["post"]["responses"]


def test_root_redirects_to_the_docs(live_server) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=10)
    connection.request("GET", "/")
    answer = connection.getresponse()
    assert answer.status == 307 and answer.getheader("location") == "/docs"
    connection.close()
