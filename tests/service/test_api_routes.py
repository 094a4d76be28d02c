"""Every route and every bad input, through the real app in process (Starlette's TestClient)."""

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServeSettings

JSON = {"content-type": "application/json"}
NPY = {"content-type": "application/x-npy"}


@pytest.fixture(scope="module")
def client(model_repository) -> Iterator[TestClient]:
    settings = ServeSettings(model_repository=model_repository["root"], default_model="tiny",
                             max_batch_size=8, max_body_bytes=200_000, device="cpu", threads=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_predict_answers_tensorflow_serving_rows_and_labels(client, model_repository, rng) -> None:
    batch = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
    answer = client.post("/predict", json={"instances": batch.tolist()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = model_repository["tiny/2"].reference(batch)  # highest version by default
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-5, atol=1e-6)
    assert body["labels"] == [str(i) for i in expected.argmax(axis=1)]
    assert answer.headers["x-model-version"] == "2"


def test_predict_named_version_uses_that_version(client, model_repository, rng) -> None:
    batch = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    answer = client.post("/v1/models/tiny/versions/1:predict", json={"instances": batch.tolist()})
    np.testing.assert_allclose(answer.json()["predictions"], model_repository["tiny/1"].reference(batch),
                               rtol=1e-5, atol=1e-6)


def test_predict_model_without_metadata_has_no_labels(client, model_repository, rng) -> None:
    batch = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    answer = client.post("/v1/models/plain:predict", json={"instances": batch.tolist()})
    assert answer.status_code == 200 and "labels" not in answer.json()
    np.testing.assert_allclose(answer.json()["predictions"], model_repository["plain/3"].reference(batch),
                               rtol=1e-5, atol=1e-6)


def test_predict_columnar_inputs_answer_outputs(client, model_repository, rng) -> None:
    batch = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    answer = client.post("/v1/models/tiny:predict", json={"inputs": {"input": batch.tolist()}})
    np.testing.assert_allclose(answer.json()["outputs"], model_repository["tiny/2"].reference(batch),
                               rtol=1e-5, atol=1e-6)


def test_predict_npy_body_answers_json_or_npy_as_accepted(client, model_repository, rng) -> None:
    batch = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    expected = model_repository["tiny/2"].reference(batch)
    headers = {"content-type": "application/x-npy"}
    as_json = client.post("/predict", content=npy_bytes(batch), headers=headers)
    np.testing.assert_allclose(as_json.json()["predictions"], expected, rtol=1e-5, atol=1e-6)
    as_npy = client.post("/predict", content=npy_bytes(batch), headers={**NPY, "accept": "application/x-npy"})
    assert as_npy.headers["content-type"] == "application/x-npy"
    np.testing.assert_allclose(np.load(io.BytesIO(as_npy.content)), expected, rtol=1e-5, atol=1e-6)


def test_predict_integers_convert_to_float(client, model_repository, rng) -> None:
    batch = rng.integers(-3, 4, size=(2, 8, 8, 1))
    answer = client.post("/predict", json={"instances": batch.tolist()})
    np.testing.assert_allclose(answer.json()["predictions"],
                               model_repository["tiny/2"].reference(batch.astype(np.float32)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("body", "status", "fragment"), [
    ({"instances": [np.ones((8, 8)).tolist()]}, 422, "instance 0 has shape [8, 8], expected [8, 8, 1]"),
    ({"instances": [np.full((8, 8, 1), "a").tolist()]}, 422, "strings"),
    ({"instances": [np.ones((8, 8, 1)).tolist()] * 9}, 422, "expected at most 8 instances"),
    ({"instances": []}, 422, "expected at least one instance"),
    ({"instance": []}, 400, 'exactly one of "instances"'),
    ([1, 2, 3], 400, 'exactly one of "instances"'),
])
def test_predict_bad_json_answers_4xx_saying_what_was_expected(client, body, status, fragment) -> None:
    answer = client.post("/predict", json=body)
    assert answer.status_code == status
    assert fragment in answer.json()["error"]


def test_predict_refuses_nan_and_infinity(client) -> None:
    instance = np.ones((8, 8, 1))
    instance[0, 0, 0] = np.nan
    answer = client.post("/predict", content=json.dumps({"instances": [instance.tolist()]}), headers=JSON)
    assert answer.status_code == 422 and answer.json()["code"] == "non_finite_input"
    batch = np.ones((1, 8, 8, 1), np.float32)
    batch[0, 2, 3, 0] = np.inf
    answer = client.post("/predict", content=npy_bytes(batch), headers=NPY)
    assert answer.status_code == 422 and "index [2, 3, 0]" in answer.json()["error"]


def test_predict_malformed_json_answers_400(client) -> None:
    answer = client.post("/predict", content=b'{"instances": [1, 2', headers=JSON)
    assert answer.status_code == 400 and "not valid JSON" in answer.json()["error"]


def test_predict_malformed_npy_answers_400(client) -> None:
    answer = client.post("/predict", content=b"\x93NUMPY garbage", headers=NPY)
    assert answer.status_code == 400 and ".npy" in answer.json()["error"]


def test_predict_truncated_npy_answers_400_with_the_sizes(client, rng) -> None:
    body = npy_bytes(rng.normal(size=(2, 8, 8, 1)).astype(np.float32))[:-8]
    answer = client.post("/predict", content=body, headers=NPY)
    assert answer.status_code == 400
    assert "shape [2, 8, 8, 1] (512 bytes), but only 504 data bytes follow" in answer.json()["error"]


def test_predict_wrong_content_type_answers_415(client) -> None:
    answer = client.post("/predict", content=b"instances=1", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and "application/json" in answer.json()["error"]


def test_predict_unacceptable_accept_answers_406(client) -> None:
    answer = client.post("/predict", json={"instances": [np.ones((8, 8, 1)).tolist()]},
                         headers={"accept": "text/csv"})
    assert answer.status_code == 406


def test_predict_body_over_the_limit_answers_413(client) -> None:
    answer = client.post("/predict", content=b"[" + b"1," * 150_000 + b"1]",
                         headers=JSON)
    assert answer.status_code == 413 and "expected at most 200000" in answer.json()["error"]


def test_unknown_model_or_version_answers_404(client) -> None:
    assert client.post("/v1/models/nope:predict", json={"instances": []}).status_code == 404
    assert client.post("/v1/models/tiny/versions/9:predict", json={"instances": []}).status_code == 404
    assert client.get("/v2/models/nope").status_code == 404
    assert client.get("/v2/models/tiny/versions/9/ready").status_code == 404
    assert client.post("/v2/models/nope/infer", json={"inputs": []}).status_code == 404


def test_broken_model_is_not_ready_and_the_others_serve(client) -> None:
    assert client.get("/v2/models/broken/ready").status_code == 503
    answer = client.post("/v1/models/broken:predict", json={"instances": [[1.0]]})
    assert answer.status_code == 503 and "not a loadable ONNX model" in answer.json()["error"]
    assert client.get("/v2/models/tiny/ready").json()["ready"] is True
    assert client.get("/v2/health/ready").status_code == 200


def test_v2_server_metadata_and_health(client) -> None:
    assert client.get("/v2").json()["extensions"] == ["binary_tensor_data", "classification",
                                                      "model_configuration", "statistics"]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_v2_model_metadata_lists_io_versions_and_providers(client) -> None:
    body = client.get("/v2/models/tiny").json()
    assert body["versions"] == ["1", "2"] and body["parameters"]["version"] == "2"
    assert body["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert body["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert body["parameters"]["providers"] == ["CPUExecutionProvider"]
    assert body["parameters"]["labels"] == [str(i) for i in range(10)]
    assert client.get("/v2/models/tiny/versions/1").json()["parameters"]["version"] == "1"


def test_v2_infer_json_tensors(client, model_repository, rng) -> None:
    batch = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
    request = {"id": "r1", "inputs": [{"name": "input", "shape": [3, 8, 8, 1], "datatype": "FP32",
                                       "data": batch.ravel().tolist()}]}
    body = client.post("/v2/models/tiny/versions/1/infer", json=request).json()
    assert body["id"] == "r1" and body["model_version"] == "1"
    output = body["outputs"][0]
    assert output["name"] == "probabilities" and output["shape"] == [3, 10]
    np.testing.assert_allclose(np.reshape(output["data"], output["shape"]),
                               model_repository["tiny/1"].reference(batch), rtol=1e-5, atol=1e-6)


def test_v2_infer_binary_tensors(client, model_repository, rng) -> None:
    batch = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    header = ('{"inputs": [{"name": "input", "shape": [2, 8, 8, 1], "datatype": "FP32", '
              f'"parameters": {{"binary_data_size": {batch.nbytes}}}}}], '
              '"outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]}').encode()
    answer = client.post("/v2/models/tiny/infer", content=header + batch.tobytes(),
                         headers={"Inference-Header-Content-Length": str(len(header)),
                                  "content-type": "application/octet-stream"})
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    result = np.frombuffer(answer.content[length:], dtype="<f4").reshape(2, 10)
    np.testing.assert_allclose(result, model_repository["tiny/2"].reference(batch), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("request_body", "status", "fragment"), [
    ({"inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}]},
     400, "exactly one input named 'input'"),
    ({"inputs": [{"name": "input", "shape": [1, 8, 8], "datatype": "FP32", "data": [0] * 64}]},
     422, "the batch has shape [1, 8, 8], expected [N, 8, 8, 1]"),
    ({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "BYTES", "data": ["a"] * 64}]},
     422, "cannot become FP32"),
    ({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 63}]},
     422, "has 63 values, expected 64"),
    ({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32", "data": [0] * 64}],
      "outputs": [{"name": "logits"}]}, 400, "unknown outputs ['logits']"),
    ({"inputs": "nothing"}, 400, '"inputs" list'),
])
def test_v2_infer_bad_requests_answer_4xx(client, request_body, status, fragment) -> None:
    answer = client.post("/v2/models/tiny/infer", json=request_body)
    assert answer.status_code == status, answer.text
    assert fragment in answer.json()["error"]


def test_v2_infer_inconsistent_binary_sizes_answer_400(client) -> None:
    header = b'{"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32", ' \
             b'"parameters": {"binary_data_size": 256}}]}'
    short = client.post("/v2/models/tiny/infer", content=header + b"\x00" * 100,
                        headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "expected 256 bytes" in short.json()["error"]
    beyond = client.post("/v2/models/tiny/infer", content=header,
                         headers={"Inference-Header-Content-Length": "99999"})
    assert beyond.status_code == 400


def test_metrics_count_requests_errors_batches_and_inferences(client) -> None:
    client.post("/predict", json={"instances": [np.ones((8, 8, 1)).tolist()]})
    client.post("/predict", content=b"{", headers=JSON)
    text = client.get("/metrics").text
    assert 'lc2d_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'lc2d_http_errors_total{route="/predict",status="400"}' in text
    assert 'lc2d_batch_size_count{model="tiny",version="2"}' in text
    assert 'lc2d_inferences_total{model="tiny",version="2"}' in text
    assert 'lc2d_queue_depth{model="tiny",version="2"} 0.0' in text
    assert "lc2d_http_request_duration_seconds_bucket" in text
    assert 'lc2d_model_provider{model="tiny",provider="CPUExecutionProvider",version="2"} 1.0' in text


def test_metrics_registries_are_separate_per_app(model_repository) -> None:
    settings = ServeSettings(model=[Path(model_repository["tiny/1"].path)], device="cpu")
    with TestClient(create_app(settings)) as fresh:
        assert 'route="/predict"' not in fresh.get("/metrics").text


def test_docs_and_openapi_have_request_examples(client) -> None:
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    example = predict["application/json"]["examples"]["one instance"]["value"]
    assert np.asarray(example["instances"]).shape == (1, 8, 8, 1)
    assert "/v2/models/{name}/infer" in schema["paths"]


def test_deadline_answers_504(model_repository) -> None:
    settings = ServeSettings(model=[Path(model_repository["tiny/1"].path)], device="cpu",
                             max_delay_ms=2000, request_timeout_ms=50)
    with TestClient(create_app(settings)) as slow:
        answer = slow.post("/predict", json={"instances": [np.ones((8, 8, 1)).tolist()]})
    assert answer.status_code == 504 and answer.json()["code"] == "deadline_exceeded"


def test_openapi_and_fast_path_are_built_from_the_route_table(client) -> None:
    from service.api.routes import ROUTES

    paths = client.get("/openapi.json").json()["paths"]
    documented = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    assert documented == {(r.method, r.path) for r in ROUTES if r.include_in_schema}
    fast = client.app.middleware_stack  # unwrap to the fast path and ask it about every POST route
    while not hasattr(fast, "match"):
        fast = fast.app
    example = {"name": "tiny", "version": "1"}
    for route in (r for r in ROUTES if r.method == "POST"):
        concrete = route.path.replace("{name}", example["name"]).replace("{version}", example["version"])
        matched = fast.match("POST", concrete)
        if route.is_fast:
            assert matched is not None and matched[0] is route, route.path
        else:  # a rare, slow POST (a model load) goes through FastAPI
            assert matched is None, route.path
    assert any(r.method == "POST" and not r.is_fast for r in ROUTES)
    assert fast.match("GET", "/v2/models/tiny") is None


def test_inference_short_path_labels_metrics_with_route_templates(client, rng) -> None:
    instance = rng.normal(size=(8, 8, 1)).tolist()
    answer = client.post("/v1/models/tiny/versions/1:predict", json={"instances": [instance]})
    assert answer.status_code == 200
    infer = {"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                         "data": np.ravel(instance).tolist()}]}
    assert client.post("/v2/models/tiny/infer", json=infer).status_code == 200
    text = client.get("/metrics").text
    assert 'route="/v1/models/{name}/versions/{version}:predict",status="200"' in text
    assert 'route="/v2/models/{name}/infer",status="200"' in text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/predict", 405),
    ("PUT", "/v2/models/tiny/infer", 405),
    ("POST", "/predict/more", 404),
    ("POST", "/v2/models/tiny/versions/1/infer/again", 404),
])
def test_requests_the_short_path_does_not_match_get_fastapis_answer(client, method, path, status) -> None:
    answer = client.request(method, path, json={"instances": []})
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == "http_error"
