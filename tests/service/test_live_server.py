"""A real ``lc2d serve`` process on 127.0.0.1: tritonclient, plain HTTP, concurrency, overload, SIGTERM."""

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
import onnxruntime
import pytest

TOLERANCE = {"rtol": 1e-6, "atol": 1e-7}  # same ONNX Runtime kernels, batch composition aside


def post_json(url: str, path: str, body: object, connection: http.client.HTTPConnection | None = None
              ) -> tuple[int, dict[str, str], dict]:
    own = connection is None
    connection = connection or connect(url)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    answer = connection.getresponse()
    payload = json.loads(answer.read())
    if own:
        connection.close()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, payload


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


@pytest.fixture(scope="module")
def direct_session(tiny_model) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(tiny_model.path), providers=["CPUExecutionProvider"])


def test_tritonclient_json_tensors_match_a_direct_run(live_server, direct_session, rng) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(urlsplit(live_server.url).netloc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
    assert client.get_model_metadata("tiny")["inputs"][0]["shape"] == [-1, 8, 8, 1]
    batch = rng.normal(size=(3, 8, 8, 1)).astype(np.float32)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=False)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=False)
    result = client.infer("tiny", [tensor], outputs=[wanted], request_id="7")
    expected = direct_session.run(None, {"input": batch})[0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)
    assert result.get_response()["id"] == "7"
    client.close()


def test_tritonclient_binary_tensors_match_a_direct_run(live_server, direct_session, rng) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(urlsplit(live_server.url).netloc)
    batch = rng.normal(size=(5, 8, 8, 1)).astype(np.float32)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    result = client.infer("tiny", [tensor], model_version="1")  # no outputs: all, binary
    expected = direct_session.run(None, {"input": batch})[0]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)
    bad = triton.InferInput("input", [1, 8, 8], "FP32")
    bad.set_data_from_numpy(np.ones((1, 8, 8), np.float32), binary_data=True)
    with pytest.raises(InferenceServerException, match=r"expected \[N, 8, 8, 1\]"):
        client.infer("tiny", [bad])
    client.close()


def test_tritonclient_http_compressed_bodies_and_version_query(live_server, direct_session, rng) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(urlsplit(live_server.url).netloc)
    batch = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    expected = direct_session.run(None, {"input": batch})[0]
    for algorithm in ("gzip", "deflate"):
        result = client.infer("tiny", [tensor], request_compression_algorithm=algorithm,
                              response_compression_algorithm=algorithm, query_params={"version": "1"})
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, **TOLERANCE)
    with pytest.raises(InferenceServerException, match="has no version '2'"):
        client.infer("tiny", [tensor], query_params={"version": "2"})
    client.close()


def test_plain_http_predict_and_errors(live_server, tiny_model, rng) -> None:
    batch = rng.normal(size=(2, 8, 8, 1)).astype(np.float32)
    status, _, body = post_json(live_server.url, "/v1/models/tiny:predict", {"instances": batch.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], tiny_model.reference(batch), rtol=1e-5, atol=1e-6)
    status, _, body = post_json(live_server.url, "/predict", {"instances": [[1.0, 2.0]]})
    assert status == 422 and body["error"] == "instance 0 has shape [2], expected [8, 8, 1]"


def test_concurrent_clients_each_get_their_own_exact_answer(live_server, direct_session) -> None:
    clients, per_client = 32, 32  # 1,024 requests

    def client(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
        local = np.random.default_rng(seed)
        connection = connect(live_server.url)
        answers = []
        for _ in range(per_client):
            batch = local.normal(size=(int(local.integers(1, 4)), 8, 8, 1)).astype(np.float32)
            status, _, body = post_json(live_server.url, "/predict", {"instances": batch.tolist()},
                                        connection)
            assert status == 200, body
            answers.append((batch, np.asarray(body["predictions"], dtype=np.float32)))
        connection.close()
        return answers

    runs_before = batch_runs(live_server.url)  # the server is shared: count this test's runs only
    with ThreadPoolExecutor(clients) as pool:
        results = [pair for answers in pool.map(client, range(clients)) for pair in answers]
    assert len(results) == clients * per_client
    for batch, predictions in results:
        np.testing.assert_allclose(predictions, direct_session.run(None, {"input": batch})[0], **TOLERANCE)
    runs = batch_runs(live_server.url) - runs_before
    assert runs < clients * per_client  # concurrent requests were merged into fewer runs


def batch_runs(url: str) -> float:
    """Model runs so far (every model version), from the server's metrics."""
    connection = connect(url)
    connection.request("GET", "/metrics")
    metrics = connection.getresponse().read().decode()
    connection.close()
    sizes = [line for line in metrics.splitlines() if line.startswith("lc2d_batch_size_count")]
    return sum(float(line.split()[-1]) for line in sizes)


def test_overload_answers_503_with_retry_after_and_keeps_serving(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--max-queue", "4", "--max-delay-ms", "300",
                          "--max-batch-size", "64")
    instance = {"instances": [np.ones((8, 8, 1)).tolist()]}
    statuses: list[tuple[int, dict[str, str]]] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        status, headers, _ = post_json(server.url, "/predict", instance)
        with lock:
            statuses.append((status, headers))

    with ThreadPoolExecutor(24) as pool:
        list(pool.map(one, range(24)))
    codes = sorted(status for status, _ in statuses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    assert all(h.get("retry-after") == "1" for s, h in statuses if s == 503)
    status, _, _ = post_json(server.url, "/predict", instance)  # still answering
    assert status == 200


def test_sigterm_finishes_queued_requests_then_exits(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--max-delay-ms", "1500", "--max-batch-size", "64")
    results: list[int] = []

    def one() -> None:
        results.append(post_json(server.url, "/predict", {"instances": [np.ones((8, 8, 1)).tolist()]})[0])

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the requests wait in the queue for the batch delay
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=20)
    assert results == [200, 200, 200, 200]
    # uvicorn re-raises the signal once drained, so the exit status is -SIGTERM (or 0)
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    with pytest.raises(OSError):
        post_json(server.url, "/predict", {"instances": []})


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "/nonexistent/model.onnx"], "does not exist"),
    (["--device", "cuda"], "CUDAExecutionProvider"),
    (["--device", "tensorrt"], "TensorrtExecutionProvider"),
    (["--max-batch-size", "0"], "--max-batch-size (or LC2D_MAX_BATCH_SIZE): expected a value of at least 1"),
])
def test_serve_start_up_failure_prints_one_line_and_exits_2(tiny_model, args, fragment) -> None:
    if "--device" in args and fragment in onnxruntime.get_available_providers():
        pytest.skip(f"this machine has {fragment}")
    if "--model" not in args:
        args = ["--model", str(tiny_model.path), *args]
    result = subprocess.run([sys.executable, "-m", "lc2d", "serve", "--port", "0", "--grpc-port", "0", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lc2d serve: error:") and fragment in lines[0]
