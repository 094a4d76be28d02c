"""``lc2d serve`` over gRPC, called with the official ``tritonclient.grpc`` (and grpc's health client).

The answers are checked against direct ONNX Runtime runs of the same file; error messages against
what HTTP answers for the same mistake (one data plane, one set of messages).
"""

import asyncio
import signal
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import grpc
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.service.test_live_server import batch_runs, post_json

TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}  # same ONNX Runtime kernels, batch composition aside


@pytest.fixture(scope="module")
def direct_session(tiny_model) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(tiny_model.path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def client(live_server):
    client = triton.InferenceServerClient(live_server.grpc_address)
    yield client
    client.close()


def fp32_input(batch: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)  # raw_input_contents
    return tensor


def top_k_reference(scores: np.ndarray, k: int, labels: list[str]) -> list[list[tuple[float, int, str]]]:
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(float(row[i]), int(i), labels[i]) for i in idx] for row, idx in zip(scores, order, strict=True)]


def parse_classes(values: np.ndarray) -> list[list[tuple[float, int, str]]]:
    parsed = []
    for row in values:
        entries = []
        for element in row:
            text = element.decode() if isinstance(element, bytes) else element  # JSON BYTES: str
            score, index, label = text.split(":")
            entries.append((float(score), int(index), label))
        parsed.append(entries)
    return parsed


def test_health_and_metadata_answer_over_grpc(client, live_server) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and client.is_model_ready("tiny", "1")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "lc2d-serve" and "classification" in server["extensions"]
    metadata = client.get_model_metadata("tiny", as_json=True)
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "8", "8", "1"]}]
    assert metadata["outputs"][0]["name"] == "probabilities" and metadata["versions"] == ["1"]
    config = client.get_model_config("tiny", as_json=True)["config"]
    assert config["max_batch_size"] == 64 and config["input"][0]["dims"] == ["8", "8", "1"]
    assert config["input"][0]["format"] == "FORMAT_NHWC" and config["output"][0]["dims"] == ["10"]
    with grpc.insecure_channel(live_server.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "tiny"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        first = next(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))
        assert first.status == health_pb2.HealthCheckResponse.SERVING


def test_raw_tensors_match_a_direct_run_and_count_in_statistics(client, direct_session, rng) -> None:
    before = client.get_inference_statistics("tiny", as_json=True)["model_stats"][0]
    batch = rng.normal(size=(5, 8, 8, 1)).astype(np.float32)
    result = client.infer("tiny", [fp32_input(batch)], model_version="1", request_id="r-5")
    expected = direct_session.run(None, {"input": batch})[0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)
    answer = result.get_response()
    assert answer.id == "r-5" and answer.model_version == "1" and len(answer.raw_output_contents) == 1
    after = client.get_inference_statistics("tiny", as_json=True)["model_stats"][0]
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) >= 5
    assert int(after["execution_count"]) > int(before.get("execution_count", 0))


@pytest.mark.parametrize(("datatype", "field", "dtype"), [
    ("FP32", "fp32_contents", np.float32), ("FP64", "fp64_contents", np.float64),
    ("INT32", "int_contents", np.int32), ("INT64", "int64_contents", np.int64),
])
def test_typed_tensors_are_answered_typed(live_server, direct_session, rng, datatype, field, dtype) -> None:
    values = rng.normal(size=(2, 8, 8, 1)) * (4 if dtype in (np.int32, np.int64) else 1)
    batch = values.astype(dtype)
    request = service_pb2.ModelInferRequest(model_name="tiny")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=batch.shape)
    getattr(tensor.contents, field).extend(batch.ravel().tolist())
    with grpc.insecure_channel(live_server.grpc_address) as channel:
        answer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert not answer.raw_output_contents
    output = answer.outputs[0]
    assert (output.name, output.datatype, list(output.shape)) == ("probabilities", "FP32", [2, 10])
    expected = direct_session.run(None, {"input": batch.astype(np.float32)})[0]
    np.testing.assert_allclose(np.array(output.contents.fp32_contents).reshape(2, 10), expected, **TOLERANCE)


def test_classification_returns_top_k_with_labels_over_grpc_and_http(client, live_server, direct_session,
                                                                     rng) -> None:
    import tritonclient.http as triton_http

    batch = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    expected = top_k_reference(direct_session.run(None, {"input": batch})[0], 3, [str(i) for i in range(10)])
    wanted = triton.InferRequestedOutput("probabilities", class_count=3)
    via_grpc = client.infer("tiny", [fp32_input(batch)], outputs=[wanted]).as_numpy("probabilities")
    http = triton_http.InferenceServerClient(urlsplit(live_server.url).netloc)
    tensor = triton_http.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    answers = [via_grpc]
    for binary in (True, False):
        wanted_http = triton_http.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)
        answers.append(http.infer("tiny", [tensor], outputs=[wanted_http]).as_numpy("probabilities"))
    http.close()
    for answer in answers:
        assert answer.shape == (4, 3)
        parsed = parse_classes(answer)
        assert [[(i, label) for _, i, label in row] for row in parsed] == \
            [[(i, label) for _, i, label in row] for row in expected]
        np.testing.assert_allclose([[s for s, _, _ in row] for row in parsed],
                                   [[s for s, _, _ in row] for row in expected], **TOLERANCE)
    request = service_pb2.ModelInferRequest(model_name="tiny", raw_input_contents=[batch.tobytes()])
    request.inputs.add(name="input", datatype="FP32", shape=batch.shape)
    request.outputs.add(name="probabilities").parameters["classification"].int64_param = -1
    with grpc.insecure_channel(live_server.grpc_address) as channel, pytest.raises(grpc.RpcError) as bad:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a positive integer" in bad.value.details()


def test_errors_map_to_grpc_codes_with_the_http_messages(client, live_server) -> None:
    cases = [  # (model, input batch, expected code)
        ("nope", np.ones((1, 8, 8, 1), np.float32), "StatusCode.NOT_FOUND"),
        ("tiny", np.ones((1, 8, 8), np.float32), "StatusCode.INVALID_ARGUMENT"),
        ("tiny", np.full((1, 8, 8, 1), np.nan, np.float32), "StatusCode.INVALID_ARGUMENT"),
        ("tiny", np.ones((65, 8, 8, 1), np.float32), "StatusCode.INVALID_ARGUMENT"),
    ]
    for model, batch, code in cases:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(model, [fp32_input(batch)])
        assert raised.value.status() == code, model
        tensor = {"name": "input", "datatype": "FP32", "shape": list(batch.shape),
                  "data": batch.ravel().tolist()}
        status, _, body = post_json(live_server.url, f"/v2/models/{model}/infer", {"inputs": [tensor]})
        assert status >= 400 and raised.value.message() == body["error"]
    with pytest.raises(InferenceServerException) as wrong_name:
        tensor = triton.InferInput("pixels", [1, 8, 8, 1], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 8, 8, 1), np.float32))
        client.infer("tiny", [tensor])
    assert wrong_name.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "expected exactly one input named 'input'" in wrong_name.value.message()
    with pytest.raises(InferenceServerException) as unknown_output:
        client.infer("tiny", [fp32_input(np.ones((1, 8, 8, 1), np.float32))],
                     outputs=[triton.InferRequestedOutput("logits")])
    assert unknown_output.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "unknown outputs ['logits']" in unknown_output.value.message()
    with pytest.raises(InferenceServerException) as no_version:
        client.get_model_metadata("tiny", model_version="9")
    assert no_version.value.status() == "StatusCode.NOT_FOUND"


def test_thousand_concurrent_requests_each_get_their_own_answer(live_server, direct_session, rng) -> None:
    import tritonclient.grpc.aio as triton_aio

    inputs = rng.normal(size=(1000, 1, 8, 8, 1)).astype(np.float32)
    expected = direct_session.run(None, {"input": inputs.reshape(1000, 8, 8, 1)})[0]

    async def run_all() -> list[np.ndarray]:
        client = triton_aio.InferenceServerClient(live_server.grpc_address)
        try:
            async def one(i: int) -> np.ndarray:
                result = await client.infer("tiny", [fp32_input(inputs[i])], request_id=str(i))
                assert result.get_response().id == str(i)
                return result.as_numpy("probabilities")
            return await asyncio.gather(*(one(i) for i in range(1000)))
        finally:
            await client.close()

    runs_before = batch_runs(live_server.url)  # the server is shared: count this test's runs only
    answers = asyncio.run(run_all())
    np.testing.assert_allclose(np.concatenate(answers), expected, **TOLERANCE)
    assert batch_runs(live_server.url) - runs_before < 1000  # concurrent calls were merged
    with urllib.request.urlopen(live_server.url + "/metrics", timeout=10) as page:
        metrics = page.read().decode()
    assert 'lc2d_grpc_requests_total{code="OK",method="ModelInfer"}' in metrics


def test_deadline_queue_limit_and_message_size_over_grpc(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--max-delay-ms", "1500", "--max-queue", "2",
                          "--max-body-bytes", "8192")
    client = triton.InferenceServerClient(server.grpc_address)
    one = np.ones((1, 8, 8, 1), np.float32)
    codes: list[object] = []

    def call() -> None:
        request = service_pb2.ModelInferRequest(model_name="tiny", raw_input_contents=[one.tobytes()])
        request.inputs.add(name="input", datatype="FP32", shape=[1, 8, 8, 1])
        with grpc.insecure_channel(server.grpc_address) as channel:
            try:
                service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=20)
                codes.append("OK")
            except grpc.RpcError as err:
                codes.append((err.code(), err.details(), dict(err.trailing_metadata() or ())))

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    refused = [c for c in codes if c != "OK"]
    assert len(codes) == 5 and codes.count("OK") >= 2 and refused
    for code, details, trailer in refused:
        assert code == grpc.StatusCode.UNAVAILABLE and "(the limit is 2)" in details
        assert trailer["lc2d-error-code"] == "queue_full" and trailer["retry-after"] == "1"
    # the batcher holds a lone request 1.5 s: a 0.3 s deadline expires in the queue, the run is skipped
    with pytest.raises(InferenceServerException) as late:
        client.infer("tiny", [fp32_input(one)], client_timeout=0.3)
    assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    time.sleep(2.0)  # past the batch delay: had it not been skipped, the late request would have run
    stats = client.get_inference_statistics("tiny", as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == codes.count("OK")
    too_big = np.ones((40, 8, 8, 1), np.float32)  # 10 KB > 8 KB
    with pytest.raises(InferenceServerException) as big:
        client.infer("tiny", [fp32_input(too_big)])
    assert big.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    client.close()


def test_sigterm_finishes_grpc_calls_in_flight_then_exits(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--max-delay-ms", "1500")
    results: list[object] = []

    def one() -> None:
        client = triton.InferenceServerClient(server.grpc_address)
        try:
            answer = client.infer("tiny", [fp32_input(np.ones((1, 8, 8, 1), np.float32))], client_timeout=20)
            results.append(answer.as_numpy("probabilities").shape)
        except InferenceServerException as err:
            results.append(err.status())
        client.close()

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the calls wait in the batcher's queue
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert results == [(1, 10)] * 4
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    client = triton.InferenceServerClient(server.grpc_address)
    with pytest.raises(InferenceServerException):
        client.is_server_live(client_timeout=2)
    client.close()


def test_repository_rpcs_index_unload_and_load_models(start_server, model_repository, client) -> None:
    with pytest.raises(InferenceServerException) as refused:  # live_server: model control mode none
        client.load_model("tiny")
    assert refused.value.status() == "StatusCode.FAILED_PRECONDITION"
    server = start_server("--model-repository", str(model_repository["root"]), "--model-control-mode",
                          "explicit")
    repository = triton.InferenceServerClient(server.grpc_address)
    index = repository.get_model_repository_index(as_json=True)["models"]
    states = {(row["name"], row.get("version")): row["state"] for row in index}
    assert states[("tiny", "2")] == "READY" and states[("plain", "3")] == "READY"
    assert repository.is_model_ready("tiny")
    repository.unload_model("tiny")
    assert not repository.is_model_ready("tiny", "2")
    with pytest.raises(InferenceServerException) as unloaded:
        repository.infer("tiny", [fp32_input(np.ones((1, 8, 8, 1), np.float32))])
    assert unloaded.value.status() in ("StatusCode.UNAVAILABLE", "StatusCode.NOT_FOUND")
    repository.load_model("tiny")
    assert repository.is_model_ready("tiny")
    answer = repository.infer("tiny", [fp32_input(np.ones((1, 8, 8, 1), np.float32))])
    assert answer.as_numpy("probabilities").shape == (1, 10)
    with pytest.raises(InferenceServerException) as missing:
        repository.load_model("nope")
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as bad_config:
        repository.load_model("tiny", config="not json")
    assert bad_config.value.status() == "StatusCode.INVALID_ARGUMENT"
    repository.close()


def test_repository_rpcs_refuse_odd_names_and_configs_without_internal_errors(start_server,
                                                                             model_repository) -> None:
    """Found by tests/fuzz/test_grpc_fuzz.py: each was INTERNAL, loaded the repository root as a model
    named "", or would have warmed up a batch of 2**70 instances."""
    root = model_repository["root"]
    server = start_server("--model-repository", str(root), "--model-control-mode", "explicit")
    repository = triton.InferenceServerClient(server.grpc_address)
    invalid = "StatusCode.INVALID_ARGUMENT"
    cases = [("", None, "StatusCode.NOT_FOUND", "model '' is not in the repository"),
             ("plain", f'{{"max_batch_size": {2**70}}}', invalid, "less than or equal to 65536"),
             ("plain", '{"instances": 1000000}', invalid, "less than or equal to 64"),
             ("plain", f'{{"threads": {2**70}}}', invalid, "less than or equal to 256"),
             ("plain", '{"max_delay_ms": 1e308}', invalid, "less than or equal to 60000"),
             ("plain", "[" * 5000 + "]" * 5000, invalid, "nested too deeply"),
             ("plain", '{"max_queue": ' + "1" * 5000 + "}", invalid, "4300 digits"),
             ("broken", None, "StatusCode.UNAVAILABLE", "model.onnx")]
    for name, config, status, fragment in cases:
        with pytest.raises(InferenceServerException) as refused:
            repository.load_model(name, config=config)
        message = refused.value.message()
        assert refused.value.status() == status and fragment in message, message
        assert str(root) not in message  # no server paths: file names only, as over HTTP
    served = {row["name"] for row in repository.get_model_repository_index(as_json=True)["models"]}
    assert "" not in served and repository.is_model_ready("plain")
    answer = repository.infer("plain", [fp32_input(np.ones((1, 4, 4, 3), np.float32))])
    np.testing.assert_allclose(answer.as_numpy("probabilities"),
                               model_repository["plain/3"].reference(np.ones((1, 4, 4, 3), np.float32)),
                               rtol=1e-5, atol=1e-6)
    repository.close()


def test_the_grpc_client_example_of_the_docs_runs(start_server, tmp_path) -> None:
    import re
    import subprocess
    import sys

    from tests.service.conftest import REPO_ROOT, write_classifier

    text = (REPO_ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    section = text[text.index("\n## gRPC\n"):]
    example = re.search(r"```python\n(.*?)```", section, re.S)
    assert example is not None and "tritonclient.grpc" in example.group(1)
    write_classifier(tmp_path / "digits.onnx", name="digits")
    server = start_server("--model", str(tmp_path / "digits.onnx"))
    code = example.group(1).replace("127.0.0.1:8001", server.grpc_address)  # the documented default port
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("True") and "(4, 10)" in lines[1] and lines[2].count(":") == 6


def test_grpc_uses_the_api_keys_and_the_tls_certificate_of_http(start_server, tiny_model, tmp_path) -> None:
    from tests.service.test_security import write_certificate

    cert, key = write_certificate(tmp_path)
    keys = tmp_path / "keys.txt"
    keys.write_text("grpc-key-789\n")
    server = start_server("--model", str(tiny_model.path), "--threads", "1", "--api-keys", str(keys),
                          "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), wait=False)
    client = triton.InferenceServerClient(server.grpc_address, ssl=True, root_certificates=str(cert))
    good = {"authorization": "Bearer grpc-key-789"}
    deadline = time.monotonic() + 60
    while True:  # the HTTP readiness the fixture polls is HTTPS here: poll gRPC instead
        try:
            if client.is_server_live(headers=good, client_timeout=2):
                break
        except InferenceServerException:
            assert time.monotonic() < deadline and server.process.poll() is None
            time.sleep(0.3)
    one = np.ones((1, 8, 8, 1), np.float32)
    answer = client.infer("tiny", [fp32_input(one)], headers=good)
    np.testing.assert_allclose(answer.as_numpy("probabilities"), tiny_model.reference(one), **TOLERANCE)
    for headers, fragment in ((None, "no Authorization header"), ({"authorization": "Bearer nope"},
                                                                   "no valid API key")):
        with pytest.raises(InferenceServerException) as refused:
            client.infer("tiny", [fp32_input(one)], headers=headers)
        assert refused.value.status() == "StatusCode.UNAUTHENTICATED" and fragment in refused.value.message()
    client.close()
    with open(cert, "rb") as pem:
        credentials = grpc.ssl_channel_credentials(root_certificates=pem.read())
    with grpc.secure_channel(server.grpc_address, credentials) as channel:  # probes need no key
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(server.grpc_address) as plain, pytest.raises(grpc.RpcError):
        health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)


def _grpc_error(address: str, request: service_pb2.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as raised:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    return raised.value


def test_malformed_tensors_get_invalid_argument_with_the_http_messages(live_server) -> None:
    """Found by tests/fuzz/test_grpc_fuzz.py: each was INTERNAL, or an answer computed from wrong values."""
    def infer(shape: list[int], datatype: str = "FP32", raw: bytes | None = None,
              typed: tuple[str, list] | None = None) -> service_pb2.ModelInferRequest:
        request = service_pb2.ModelInferRequest(model_name="tiny")
        tensor = request.inputs.add(name="input", datatype=datatype, shape=shape)
        if raw is not None:
            request.raw_input_contents.append(raw)
        if typed is not None:
            getattr(tensor.contents, typed[0]).extend(typed[1])
        return request

    overflowing = _grpc_error(live_server.grpc_address, infer([2**62, 4, 8, 1], raw=b""))  # product > int64
    assert overflowing.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"expected {2**62 * 4 * 8 * 4} bytes" in overflowing.details()
    cases = [  # (gRPC request, the same tensor as v2 JSON)
        (infer([0, 2**62, 8, 1], raw=b""), {"shape": [0, 2**62, 8, 1], "datatype": "FP32", "data": []}),
        (infer([1, 8, 8, 1], "INT8", typed=("int_contents", [1000] * 64)),
         {"shape": [1, 8, 8, 1], "datatype": "INT8", "data": [1000] * 64}),
        (infer([1, 8, 8, 1], "UINT16", typed=("uint_contents", [70_000] * 64)),
         {"shape": [1, 8, 8, 1], "datatype": "UINT16", "data": [70_000] * 64}),
    ]
    for request, tensor in cases:
        error = _grpc_error(live_server.grpc_address, request)
        status, _, body = post_json(live_server.url, "/v2/models/tiny/infer",
                                    {"inputs": [{"name": "input", **tensor}]})
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and status == 422, body
        assert error.details() == body["error"], tensor["datatype"]
    out_of_range = _grpc_error(live_server.grpc_address, cases[1][0]).details()
    assert "must lie in [-128, 127], received 1000" in out_of_range
    both = infer([1, 8, 8, 1], raw=np.zeros(64, np.float32).tobytes(), typed=("fp32_contents", [1.0] * 64))
    mixed = _grpc_error(live_server.grpc_address, both)  # which values would it compute? neither
    assert mixed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "both raw_input_contents and contents.fp32_contents" in mixed.details()


def test_statistics_of_a_version_without_a_model_name_are_refused(live_server) -> None:
    """gRPC can send a version without a name; the version was ignored and every model's answered."""
    with grpc.insecure_channel(live_server.grpc_address) as channel, pytest.raises(grpc.RpcError) as refused:
        service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
            service_pb2.ModelStatisticsRequest(version="1"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "statistics of version '1' need a model name, received none"


def test_names_longer_than_a_trailer_get_not_found_with_a_cut_message(live_server) -> None:
    """A status message travels in a trailer; past 16 KiB the client dropped it (RESOURCE_EXHAUSTED)."""
    with grpc.insecure_channel(live_server.grpc_address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        long_version = service_pb2.ModelMetadataRequest(name="tiny", version="9" * 20_000)
        for call in (lambda: stub.ModelReady(service_pb2.ModelReadyRequest(name="x" * 20_000), timeout=10),
                     lambda: stub.ModelMetadata(long_version, timeout=10),
                     lambda: health_pb2_grpc.HealthStub(channel).Check(
                         health_pb2.HealthCheckRequest(service="y" * 20_000), timeout=10)):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND, raised.value.details()[:200]
            assert raised.value.details().endswith("characters cut)") and len(raised.value.details()) <= 4000
