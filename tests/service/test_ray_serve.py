"""``lc2d serve --ray`` on a local Ray instance: 2 replicas behind Ray Serve's proxy.

One Ray instance (``ray_instance``, shared with the scoring tests) and one ``lc2d serve --ray``
process joining it by address for the whole module; the process deletes its application on
SIGTERM and the module shuts Ray Serve down after it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ray.serve")

from ray import serve  # noqa: E402

from service.ray_serve import APP_NAME, DEPLOYMENT_NAME  # noqa: E402
from tests.fuzz.conftest import FUZZ_SETTINGS  # noqa: E402
from tests.fuzz.strategies import encode, mutated, npy_bodies, predict_payloads  # noqa: E402
from tests.service.conftest import REPO_ROOT, WrittenModel, free_port  # noqa: E402

# Same ONNX Runtime kernels as the direct run; a batch merged by a replica's batcher may round
# differently from a batch of one, hence not bit-for-bit.
TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}
READY_TIMEOUT_S = 120.0


@dataclass
class RayServed:
    """The ``lc2d serve --ray`` process and where Ray Serve's proxy listens."""

    process: subprocess.Popen[str]
    port: int

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"


def _ready_through_proxy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/v2/health/ready")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _running_replicas() -> int:
    status = serve.status().applications.get(APP_NAME)
    if status is None or DEPLOYMENT_NAME not in status.deployments:
        return 0
    return int(status.deployments[DEPLOYMENT_NAME].replica_states.get("RUNNING", 0))


def _wait(condition: Any, what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_served(ray_instance: None, tiny_model: WrittenModel) -> Iterator[RayServed]:
    import ray

    port = free_port()
    command = [sys.executable, "-m", "lc2d", "serve", "--ray",
               "--ray-address", ray.get_runtime_context().gcs_address, "--replicas", "2",
               "--ray-replica-cpus", "0.5", "--threads", "1", "--model", str(tiny_model.path),
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        _wait(lambda: process.poll() is not None or _ready_through_proxy(port), "the proxy to be ready")
        assert process.poll() is None, f"lc2d serve --ray exited: {process.stdout.read()}"  # type: ignore[union-attr]
        _wait(lambda: _running_replicas() == 2, "2 running replicas")
        yield RayServed(process, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        serve.shutdown()


@pytest.fixture(scope="module")
def direct_session(tiny_model: WrittenModel) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(tiny_model.path), providers=["CPUExecutionProvider"])


def _replica_pids(expected: int, timeout_s: float = 60.0) -> set[int]:
    """The process ids of the running replicas, asked through a deployment handle."""
    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP_NAME)
    pids: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while len(pids) < expected and time.monotonic() < deadline:
        pids.update(handle.pid.remote().result(timeout_s=30) for _ in range(8))
    return pids


def test_ray_serve_answers_1000_concurrent_tritonclient_requests_each_with_its_own_answer(
        ray_served: RayServed, direct_session: onnxruntime.InferenceSession,
        rng: np.random.Generator) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(ray_served.netloc, concurrency=64, network_timeout=120)
    assert client.is_server_ready() and client.is_model_ready("tiny")
    inputs = rng.random((1000, 1, 8, 8, 1), dtype=np.float32)  # distinct inputs: answers cannot be swapped
    pending = []
    for x in inputs:
        tensor = triton.InferInput("input", [1, 8, 8, 1], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        pending.append(client.async_infer("tiny", [tensor]))
    answers = np.concatenate([r.get_result(timeout=120).as_numpy("probabilities") for r in pending])
    client.close()
    expected = direct_session.run(None, {"input": inputs[:, 0]})[0]
    np.testing.assert_allclose(answers, expected, **TOLERANCE)
    # every answer is nearer its own reference than any other input's
    own = np.abs(answers - expected).max(axis=1)
    assert (own < np.abs(answers - np.roll(expected, 1, axis=0)).max(axis=1)).all()
    assert len(_replica_pids(2)) == 2


@dataclass
class LoadRecord:
    """What the load threads saw: requests sent, answered right, failed, and in flight."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    ok: int = 0
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, failed, what)
    wrong: int = 0


def _load(port: int, session: onnxruntime.InferenceSession, record: LoadRecord, stop: threading.Event,
          seed: int) -> None:
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        x = rng.random((1, 8, 8, 1), dtype=np.float32)
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                       "data": x.ravel().tolist()}]})
        with record.lock:
            record.in_flight += 1
        sent = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("POST", "/v2/models/tiny/infer", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            payload = answer.read()
            outcome = "ok" if answer.status == 200 else f"HTTP {answer.status}: {payload[:200]!r}"
        except OSError as err:
            outcome = f"{type(err).__name__}: {err}"
        finally:
            connection.close()
        with record.lock:
            record.in_flight -= 1
            if outcome != "ok":
                record.failures.append((sent, time.monotonic(), outcome))
                continue
            record.ok += 1
            got = np.asarray(json.loads(payload)["outputs"][0]["data"], dtype=np.float32)
            if not np.allclose(got, session.run(None, {"input": x})[0].ravel(), **TOLERANCE):
                record.wrong += 1


def test_killing_one_replica_fails_only_requests_in_flight_and_ray_replaces_it(
        ray_served: RayServed, direct_session: onnxruntime.InferenceSession) -> None:
    before = _replica_pids(2)
    assert len(before) == 2
    victim = min(before)
    record, stop = LoadRecord(), threading.Event()
    threads = [threading.Thread(target=_load, args=(ray_served.port, direct_session, record, stop, seed))
               for seed in range(8)]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: record.ok >= 50, "50 answers before the kill", timeout_s=60)
        with record.lock:  # nothing starts or ends while the kill is decided
            os.kill(victim, signal.SIGKILL)
            killed_at, in_flight_at_kill = time.monotonic(), record.in_flight
        ok_at_kill = record.ok
        _wait(lambda: record.ok >= ok_at_kill + 100, "100 answers after the kill", timeout_s=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    assert record.wrong == 0
    # Only requests already sent when the replica died may fail, and no more of them than were
    # in flight then (on both replicas: an upper bound of those on the killed one).
    assert len(record.failures) <= in_flight_at_kill, record.failures
    assert all(sent <= killed_at for sent, _, _ in record.failures), record.failures
    _wait(lambda: _running_replicas() == 2, "Ray Serve to run 2 replicas again")
    after = _replica_pids(2)
    assert len(after) == 2 and victim not in after and len(after & before) == 1
    assert _ready_through_proxy(ray_served.port)


def _npy(header: str, data: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A ``.npy`` body with this header dict text, padded as np.save pads it."""
    text = header.encode() + b"\n"
    length = struct.pack("<H" if version[0] == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def _v2(tensor: dict[str, Any], **request: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8, 8, 1],
                                   "data": [0.5] * 64, **tensor}], **request}).encode()


JSON_TYPE: dict[str, str | bytes] = {"Content-Type": "application/json"}
NPY_TYPE: dict[str, str | bytes] = {"Content-Type": "application/x-npy"}
# The cases, sent through Ray's proxy.
MALFORMED_REQUESTS: list[tuple[str, bytes, dict[str, str | bytes]]] = [
    ("/predict", b'{"instances": ' + b"[" * 3000 + b"]" * 3000 + b"}", JSON_TYPE),  # deep JSON
    ("/predict", b'{"instances": [[[[' + b"1" * 6000 + b"]]]]}", JSON_TYPE),  # a 6,000-digit integer
    ("/predict", b'{"instances": [{"input": [[[0.5]]]}, 1, null, [2]]}', JSON_TYPE),  # mixed instances
    ("/predict", b'{"instances": [[[[0.5]], [[true]]]]}', JSON_TYPE),  # a boolean among numbers
    ("/predict", b'{"instances": [[[[NaN]]]]}', JSON_TYPE),
    ("/predict", b'{"instances": [[[[0.5]]]', JSON_TYPE),  # truncated
    ("/predict", _npy("{'descr': '<f4', 'fortran_order': True, 'shape': (100000, 100000, 8, 1), }",
                      b"\0" * 100), NPY_TYPE),  # claims 298 GiB
    ("/predict", _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (40000, 40000, 8, 1), }",
                      b"\0" * 256, (3, 0)), NPY_TYPE),  # format 3.0, claims 95 GiB
    ("/predict", b"\x93NUMPX\x01\x00" + b"\0" * 60, NPY_TYPE),  # bad magic
    ("/predict", _npy("__import__('os').system('true')"), NPY_TYPE),
    ("/predict", b"PK\x03\x04" + b"\0" * 60, NPY_TYPE),  # a .npz
    ("/v2/models/tiny/infer", _v2({"shape": [2**62, 2**62, 8, 1], "data": []}), JSON_TYPE),  # overflows int64
    ("/v2/models/tiny/infer", _v2({"shape": [True, 8, 8, 1]}), JSON_TYPE),  # booleans as dimensions
    ("/v2/models/tiny/infer", _v2({"shape": [-1, 8, 8, 1]}), JSON_TYPE),
    ("/v2/models/tiny/infer", _v2({"parameters": [1]}), JSON_TYPE),  # parameters that are not objects
    ("/v2/models/tiny/infer", _v2({}, parameters="binary"), JSON_TYPE),
    ("/v2/models/tiny/infer", _v2({"datatype": "INT8", "data": [1000] * 64}), JSON_TYPE),  # out of range
    ("/v2/models/tiny/infer", _v2({"datatype": "BYTES"}), JSON_TYPE),
    ("/v2/models/tiny/infer", _v2({}), {"Content-Type": "application/octet-stream",
                                       "Inference-Header-Content-Length": "١٢".encode()}),  # non-ASCII digits
    ("/v2/models/tiny/infer", _v2({"parameters": {"binary_data_size": 10**30}}),
     {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": "120"}),
    ("/v2/models/nope/infer", _v2({}), JSON_TYPE),
    ("/v2/repository/models/%00/load", b"{}", JSON_TYPE),
    ("/predict", b"[[1]]", {"Content-Type": "text/plain"}),
]


def test_malformed_requests_through_ray_serve_get_json_4xx_and_the_connection_stays_correct(
        ray_served: RayServed, direct_session: onnxruntime.InferenceSession) -> None:
    """The issue's malformed bodies through Ray Serve's proxy: a JSON 4xx each, never a 5xx, and a
    valid request on the same keep-alive connection right after is answered as ONNX Runtime computes."""
    from tests.fuzz.conftest import Answer, assert_no_server_error

    connection = http.client.HTTPConnection("127.0.0.1", ray_served.port, timeout=60)
    rng = np.random.default_rng(15)
    for path, body, headers in MALFORMED_REQUESTS:
        connection.request("POST", path, body, headers)
        answer = connection.getresponse()
        result = Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        assert_no_server_error(result)
        assert result.status >= 400, (path, body[:80])
        if result.headers.get("connection", "").lower() == "close":
            connection.close()  # the server said so: http.client reconnects on the next request
        x = rng.random((2, 8, 8, 1), dtype=np.float32)
        connection.request("POST", "/predict", json.dumps({"instances": x.tolist()}), JSON_TYPE)
        valid = connection.getresponse()
        payload = valid.read()
        assert valid.status == 200, (path, payload[:200])
        expected = direct_session.run(None, {"input": x})[0]
        np.testing.assert_allclose(json.loads(payload)["predictions"], expected, **TOLERANCE)
    connection.close()


RAY_SHAPE = (8, 8, 1)  # tiny_model's instance


@settings(FUZZ_SETTINGS, max_examples=12)
@given(request=st.one_of(
    st.tuples(st.just("/predict"), predict_payloads(RAY_SHAPE).map(encode).flatmap(mutated),
              st.just(JSON_TYPE)),
    st.tuples(st.just("/predict"), npy_bodies(), st.just(NPY_TYPE))))
def test_bodies_of_the_fuzz_strategies_through_ray_serve_get_no_5xx_and_the_connection_stays_correct(
        ray_served: RayServed, direct_session: onnxruntime.InferenceSession,
        request: tuple[str, bytes, dict[str, str | bytes]]) -> None:
    """A dozen bodies drawn from the HTTP fuzz suite's strategies (tests/fuzz/strategies.py), with the
    same assertions: no 5xx, JSON errors, the same connection then answers correctly."""
    from tests.fuzz.conftest import Answer, assert_no_server_error

    path, body, headers = request
    connection = http.client.HTTPConnection("127.0.0.1", ray_served.port, timeout=60)
    connection.request("POST", path, body, headers)
    answer = connection.getresponse()
    headers_received = {k.lower(): v for k, v in answer.getheaders()}
    assert_no_server_error(Answer(answer.status, headers_received, answer.read()))
    x = np.random.default_rng(len(body)).random((2, *RAY_SHAPE), dtype=np.float32)
    connection.request("POST", "/predict", json.dumps({"instances": x.tolist()}), JSON_TYPE)
    valid = connection.getresponse()
    payload = valid.read()
    connection.close()
    assert valid.status == 200, payload[:200]
    np.testing.assert_allclose(json.loads(payload)["predictions"], direct_session.run(None, {"input": x})[0],
                               **TOLERANCE)
