"""TensorFlow Serving's REST API beyond predict, compressed bodies and ``?version=``, in process.

The request and answer shapes are those of TensorFlow Serving's ``api_rest.md`` examples,
rewritten for our models (an 8x8x1 classifier and a one-output regressor); values are checked
against NumPy references of the same weights.
"""

import base64
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper

from service.api import schemas
from service.app import create_app
from service.settings import ServeSettings
from tests.service.conftest import WrittenModel, write_classifier

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def write_regressor(path: Path, seed: int = 5) -> np.ndarray:
    """``input [N, 4] -> MatMul -> value [N, 1]`` without metadata; returns the weights."""
    weights = np.random.default_rng(seed).normal(size=(4, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["value"])], "regressor",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """digits/1 and digits/2 (both served, default version 1) and reg/1."""
    root = tmp_path_factory.mktemp("tfserving_repository")
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    models: dict[str, object] = {"root": root}
    for version, seed in ((1, 21), (2, 22)):
        path = root / "digits" / str(version) / "model.onnx"
        models[f"digits/{version}"] = WrittenModel(path, write_classifier(path, seed=seed, labels=labels))
    (root / "digits" / "config.json").write_text(json.dumps({"version_policy": {"latest": 2},
                                                             "default_version": 1}))
    models["reg"] = write_regressor(root / "reg" / "1" / "model.onnx")
    models["labels"] = labels
    return models


@pytest.fixture(scope="module")
def client(repository) -> Iterator[TestClient]:
    settings = ServeSettings(model_repository=repository["root"], max_batch_size=8, max_body_bytes=100_000,
                             gzip_min_bytes=1000, device="cpu", threads=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_model_status_lists_every_version_in_tensorflow_serving_format(client) -> None:
    answer = client.get("/v1/models/digits")
    assert answer.status_code == 200
    assert answer.json() == {"model_version_status": [
        {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        for version in ("1", "2")]}
    schemas.ModelStatus.model_validate(answer.json())  # the OpenAPI schema describes the real answer
    one = client.get("/v1/models/digits/versions/2").json()["model_version_status"]
    assert [status["version"] for status in one] == ["2"]
    assert client.get("/v1/models/digits/labels/canary").json()["model_version_status"][0]["version"] == "2"
    assert client.get("/v1/models/digits/labels/stable").json()["model_version_status"][0]["version"] == "1"
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    unknown_label = client.get("/v1/models/digits/labels/beta")
    assert unknown_label.status_code == 404 and "['stable', 'canary']" in unknown_label.json()["error"]


def test_model_metadata_is_the_serving_default_signature(client) -> None:
    answer = client.get("/v1/models/digits/versions/2/metadata")
    assert answer.status_code == 200
    body = schemas.TFModelMetadata.model_validate(answer.json()).model_dump()
    assert body["model_spec"] == {"name": "digits", "signature_name": "", "version": "2"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert signature["inputs"]["input"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["input"]["tensor_shape"]["dim"]] == ["-1", "8", "8", "1"]
    assert [d["size"] for d in signature["outputs"]["probabilities"]["tensor_shape"]["dim"]] == ["-1", "10"]
    assert client.get("/v1/models/digits/metadata").json()["model_spec"]["version"] == "1"  # default


def test_predict_by_label_uses_the_labelled_version(client, repository, rng) -> None:
    batch = rng.random((2, 8, 8, 1)).astype(np.float32)
    for label, version in (("stable", "1"), ("canary", "2")):
        answer = client.post(f"/v1/models/digits/labels/{label}:predict", json={"instances": batch.tolist()})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == version
        np.testing.assert_allclose(answer.json()["predictions"],
                                   repository[f"digits/{version}"].reference(batch), **TOLERANCE)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory,
             ) -> Iterator[tuple[TestClient, dict[str, WrittenModel]]]:
    """``labelled``: versions 1-3 on disk, 2 and 3 served, labels in its ``config.json`` (one of
    them names version 1, which is not loaded); ``badlabels``: a label name the config refuses."""
    root = tmp_path_factory.mktemp("labelled_repository")
    written = {}
    for version in (1, 2, 3):
        path = root / "labelled" / str(version) / "model.onnx"
        written[str(version)] = WrittenModel(path, write_classifier(path, seed=30 + version))
    (root / "labelled" / "config.json").write_text(json.dumps({
        "version_policy": {"specific": [2, 3]}, "default_version": 2,
        "labels": {"stable": 3, "beta": 2, "retired": 1}}))
    write_classifier(root / "badlabels" / "1" / "model.onnx", seed=40)
    (root / "badlabels" / "config.json").write_text(json.dumps({"labels": {"to/day": 1}}))
    settings = ServeSettings(model_repository=root, max_batch_size=8, device="cpu", threads=1)
    with TestClient(create_app(settings)) as test_client:
        yield test_client, written


def test_configured_labels_name_versions_and_stable_canary_fall_back(labelled, rng) -> None:
    client, written = labelled
    batch = rng.random((2, 8, 8, 1)).astype(np.float32)
    # stable and beta from the config (the fixed rule would make stable the default version 2);
    # canary is not configured: the highest ready version
    for label, version in (("stable", "3"), ("beta", "2"), ("canary", "3")):
        status = client.get(f"/v1/models/labelled/labels/{label}")
        assert status.status_code == 200 and status.json()["model_version_status"][0]["version"] == version
        answer = client.post(f"/v1/models/labelled/labels/{label}:predict",
                             json={"instances": batch.tolist()})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == version
        np.testing.assert_allclose(answer.json()["predictions"], written[version].reference(batch),
                                   **TOLERANCE)
    metadata = client.get("/v1/models/labelled/labels/beta/metadata").json()
    assert metadata["model_spec"]["version"] == "2"


def test_unknown_and_unloaded_labels_are_404_and_a_bad_label_map_is_refused(labelled) -> None:
    client, _ = labelled
    unknown = client.post("/v1/models/labelled/labels/gamma:predict", json={"instances": []})
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert "'gamma'" in error and "['stable', 'canary', 'beta', 'retired']" in error
    retired = client.post("/v1/models/labelled/labels/retired:predict",
                          json={"instances": np.zeros((1, 8, 8, 1)).tolist()})
    assert retired.status_code == 404 and "no version '1'" in retired.json()["error"]  # not served
    assert client.get("/v1/models/labelled/labels/retired").status_code == 404
    refused = client.get("/v1/models/badlabels/labels/stable")
    assert refused.status_code == 503
    assert "labels.to/day" in refused.json()["error"] and "pattern" in refused.json()["error"]


def test_classify_answers_every_class_label_and_score_highest_first(client, repository, rng) -> None:
    batch = rng.random((3, 8, 8, 1)).astype(np.float32)
    request = {"signature_name": "serving_default", "examples": [{"input": x.tolist()} for x in batch]}
    answer = client.post("/v1/models/digits/versions/2:classify", json=request)
    assert answer.status_code == 200, answer.text
    schemas.ClassifyResponse.model_validate(answer.json())
    expected = repository["digits/2"].reference(batch)
    labels = repository["labels"]
    for row, result in zip(expected, answer.json()["result"], strict=True):
        order = np.argsort(-row)
        assert [label for label, _ in result] == [labels[i] for i in order]
        np.testing.assert_allclose([score for _, score in result], row[order], **TOLERANCE)
    context = {"context": {"input": batch[0].tolist()}, "examples": [{}, {}]}  # context fills each example
    shared = client.post("/v1/models/digits/versions/2:classify", json=context).json()["result"]
    assert shared[0] == shared[1]
    assert shared[0][0][0] == labels[int(expected[0].argmax())]


def test_regress_answers_one_value_per_example(client, repository, rng) -> None:
    batch = rng.normal(size=(5, 4)).astype(np.float32)
    answer = client.post("/v1/models/reg:regress", json={"examples": [{"input": x.tolist()} for x in batch]})
    assert answer.status_code == 200, answer.text
    schemas.RegressResponse.model_validate(answer.json())
    np.testing.assert_allclose(answer.json()["result"], (batch @ repository["reg"]).ravel(), **TOLERANCE)


def test_classify_and_regress_refuse_models_that_do_not_fit(client, rng) -> None:
    image = [[[0.0]] * 8] * 8
    regress_digits = client.post("/v1/models/digits:regress", json={"examples": [{"input": image}]})
    assert regress_digits.status_code == 400 and "regress needs a model with one output of one value" in \
        regress_digits.json()["error"]
    classify_reg = client.post("/v1/models/reg:classify", json={"examples": [{"input": [0.0] * 4}]})
    assert classify_reg.status_code == 400 and "use predict" in classify_reg.json()["error"]
    no_examples = client.post("/v1/models/reg:regress", json={"instances": [[0.0] * 4]})
    assert no_examples.status_code == 400 and '"examples" list' in no_examples.json()["error"]
    wrong_feature = client.post("/v1/models/reg:regress", json={"examples": [{"x": [0.0] * 4}]})
    assert wrong_feature.status_code == 400 and "exactly the feature 'input'" in wrong_feature.json()["error"]


def test_unknown_signature_name_is_400_listing_serving_default(client) -> None:
    for path, body in (("/v1/models/reg:predict", {"signature_name": "classify_x", "instances": [[0.0] * 4]}),
                       ("/v1/models/reg:regress", {"signature_name": "x", "examples": [{"input": [0] * 4}]})):
        answer = client.post(path, json=body)
        assert answer.status_code == 400 and "['serving_default']" in answer.json()["error"], path


def test_b64_values_are_raw_float32_or_an_image(client, repository, rng) -> None:
    batch = rng.random((2, 8, 8, 1)).astype(np.float32)
    raw = [{"b64": base64.b64encode(x.astype("<f4").tobytes()).decode()} for x in batch]
    answer = client.post("/v1/models/digits/versions/2:predict", json={"instances": raw})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], repository["digits/2"].reference(batch),
                               **TOLERANCE)
    from PIL import Image

    pixels = (rng.random((8, 8)) * 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels, "L").save(png, format="PNG")
    image = {"b64": base64.b64encode(png.getvalue()).decode()}
    answer = client.post("/v1/models/digits/versions/2:predict", json={"instances": [{"input": image}]})
    assert answer.status_code == 200, answer.text
    expected = repository["digits/2"].reference((pixels / 255.0).reshape(1, 8, 8, 1).astype(np.float32))
    np.testing.assert_allclose(answer.json()["predictions"], expected, **TOLERANCE)
    bad = client.post("/v1/models/digits:predict", json={"instances": [{"b64": "bm90IGFuIGltYWdl"}]})
    assert bad.status_code == 400 and "expected 256 bytes" in bad.json()["error"]
    not_base64 = client.post("/v1/models/digits:predict", json={"instances": [{"b64": "%%%"}]})
    assert not_base64.status_code == 400 and "not base64" in not_base64.json()["error"]


def test_tensorflow_serving_routes_read_a_body_without_content_type_as_json(client, repository) -> None:
    body = json.dumps({"instances": [[0.5, 1.0, -1.0, 2.0]]}).encode()
    answer = client.post("/v1/models/reg:predict", content=body, headers={"content-type": ""})
    assert answer.status_code == 200, answer.text
    expected = np.array([[0.5, 1.0, -1.0, 2.0]], np.float32) @ repository["reg"]
    np.testing.assert_allclose(answer.json()["predictions"], expected, **TOLERANCE)
    text = client.post("/v1/models/reg:predict", content=body, headers={"content-type": "text/plain"})
    assert text.status_code == 415  # what a plain HTML form can post is still refused
    form = client.post("/v1/models/reg:predict", content=body,
                       headers={"content-type": "application/x-www-form-urlencoded"})  # `curl -d`
    assert form.status_code == 415 and "add -H 'Content-Type: application/json'" in form.json()["error"]


def test_gzip_and_deflate_bodies_are_read_within_the_limit_on_their_decompressed_size(client, repository,
                                                                                     rng) -> None:
    batch = rng.normal(size=(3, 4)).astype(np.float32)
    body = json.dumps({"instances": batch.tolist()}).encode()
    expected = batch @ repository["reg"]
    for encoding, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body)),
                           ("deflate", zlib.compress(body)[2:-4])):  # raw deflate, no zlib wrapper
        answer = client.post("/v1/models/reg:predict", content=data,
                             headers={"content-type": "application/json", "content-encoding": encoding})
        assert answer.status_code == 200, (encoding, answer.text)
        np.testing.assert_allclose(answer.json()["predictions"], expected, **TOLERANCE)
    bomb = gzip.compress(b" " * 10_000_000)  # 10 MB of spaces in about 10 KB: limit is 100,000
    assert len(bomb) < 100_000
    answer = client.post("/v1/models/reg:predict", content=bomb,
                         headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert answer.status_code == 413 and "decompresses to more than 100000 bytes" in answer.json()["error"]
    broken = client.post("/v1/models/reg:predict", content=b"not gzip",
                         headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert broken.status_code == 400 and "not valid gzip data" in broken.json()["error"]
    brotli = client.post("/v1/models/reg:predict", content=body,
                         headers={"content-type": "application/json", "content-encoding": "br"})
    assert brotli.status_code == 415 and "Content-Encoding 'br'" in brotli.json()["error"]


def test_large_answers_are_gzipped_for_clients_that_accept_it(client, rng) -> None:
    batch = rng.random((8, 8, 8, 1)).astype(np.float32)  # 80 floats of JSON: above 1,000 bytes
    body = {"instances": batch.tolist()}
    zipped = client.post("/v1/models/digits:predict", json=body, headers={"accept-encoding": "gzip"})
    plain = client.post("/v1/models/digits:predict", json=body, headers={"accept-encoding": "identity"})
    assert zipped.headers.get("content-encoding") == "gzip" and "content-encoding" not in plain.headers
    assert zipped.json() == plain.json()  # httpx decompresses
    small = client.get("/v1/models/reg", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in small.headers  # under the threshold


def test_v2_infer_honours_the_version_query_and_refuses_a_conflict(client, repository) -> None:
    x = np.full((1, 8, 8, 1), 0.25, np.float32)
    request = {"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                           "data": x.ravel().tolist()}]}
    for query, version in (("?version=2", "2"), ("", "1")):
        answer = client.post(f"/v2/models/digits/infer{query}", json=request)
        assert answer.status_code == 200 and answer.json()["model_version"] == version
        np.testing.assert_allclose(answer.json()["outputs"][0]["data"],
                                   repository[f"digits/{version}"].reference(x).ravel(), **TOLERANCE)
    same = client.post("/v2/models/digits/versions/2/infer?version=2", json=request)
    assert same.status_code == 200
    conflict = client.post("/v2/models/digits/versions/1/infer?version=2", json=request)
    assert conflict.status_code == 400 and "expected one" in conflict.json()["error"]
    missing = client.post("/v2/models/digits/infer?version=9", json=request)
    assert missing.status_code == 404
    other = client.post("/v2/models/digits/infer?verison=2", json=request)
    assert other.status_code == 400 and "unknown query parameters ['verison']" in other.json()["error"]
