"""The server the fuzz tests attack, and the clients that check it after every attack.

``LC2D_FUZZ_EXAMPLES`` sets the examples per test (small in ``make test``, large in ``make fuzz``).
Every HTTP attack goes over one keep-alive connection, every gRPC attack over one channel, each
followed by a valid request on the same connection or channel whose answer is compared with the
NumPy reference: a server that crashed, closed the connection without saying so, or mixed up
answers fails there.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from tests.service.conftest import REPO_ROOT, ServerProcess, WrittenModel, write_classifier

EXAMPLES = int(os.environ.get("LC2D_FUZZ_EXAMPLES", "40"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize="LC2D_FUZZ_EXAMPLES" not in os.environ,
                         suppress_health_check=list(HealthCheck))
"""Hypothesis settings of every fuzz test: derandomised (reproducible) unless a fuzz run asks."""


class Tolerance(TypedDict):
    rtol: float
    atol: float


TOLERANCE: Tolerance = {"rtol": 1e-5, "atol": 1e-6}
INSTANCE_SHAPE = (4, 4, 1)
MAX_BODY_BYTES = 200_000


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class FuzzClient:
    """One keep-alive connection to the fuzzed server, and the model it serves."""

    server: ServerProcess
    model: WrittenModel
    connection: http.client.HTTPConnection = field(init=False)
    attacks: int = 0

    def __post_init__(self) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def send(self, method: str, path: str, body: bytes | None, headers: dict[str, str | bytes]) -> Answer:
        self.connection.request(method, path, body, headers)
        answer = self.connection.getresponse()
        payload = answer.read()
        return Answer(answer.status, {k.lower(): v for k, v in answer.getheaders()}, payload)

    def attack(self, method: str, path: str, body: bytes | None, headers: dict[str, str | bytes]) -> Answer:
        """Sends one malformed request, asserts a JSON answer below 500, then checks the server."""
        self.attacks += 1
        answer = self.send(method, path, body, headers)
        assert_no_server_error(answer)
        if answer.headers.get("connection", "").lower() == "close":
            self.connection.close()  # the server said so: http.client reconnects on the next request
        self.check_still_correct()
        return answer

    def check_still_correct(self) -> None:
        """A valid request on the same connection gets the NumPy reference's answer."""
        batch = np.random.default_rng(self.attacks).normal(size=(2, *INSTANCE_SHAPE)).astype(np.float32)
        answer = self.send("POST", "/predict", json.dumps({"instances": batch.tolist()}).encode(),
                           {"Content-Type": "application/json"})
        assert answer.status == 200, answer.body[:300]
        body = answer.json()
        assert isinstance(body, dict), body
        np.testing.assert_allclose(body["predictions"], self.model.reference(batch), **TOLERANCE)


def assert_no_server_error(answer: Answer) -> None:
    """No 5xx caused by the request; every error is a JSON body with ``error`` and ``code``."""
    assert answer.status < 500, answer.body[:300]
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
        body = answer.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("code"), body
        assert "Traceback" not in body["error"] and "/site-packages/" not in body["error"], body


CLIENT_ERROR_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DEADLINE_EXCEEDED})
"""The statuses a request may earn; INTERNAL, UNKNOWN and DATA_LOSS are the server's faults."""
GRPC_ATTACK_TIMEOUT_S = 30.0


@dataclass
class GrpcFuzzClient:
    """One gRPC channel to a fuzzed server, and the model it serves as ``tiny``."""

    server: ServerProcess
    model: WrittenModel
    channel: grpc.Channel = field(init=False)
    stub: pb_grpc.GRPCInferenceServiceStub = field(init=False)
    attacks: int = 0

    def __post_init__(self) -> None:
        self.channel = grpc.insecure_channel(self.server.grpc_address)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def attack(self, method: str | grpc.UnaryUnaryMultiCallable, request: object) -> object:
        """Sends one odd request, asserts a client-error status or an answer, then checks the server.

        Returns:
            The answer, or the ``grpc.RpcError``.
        """
        self.attacks += 1
        try:
            answer = self.rpc(method)(request, timeout=GRPC_ATTACK_TIMEOUT_S)
        except grpc.RpcError as err:
            assert_client_error_status(err, self.model)
            answer = err
        self.check_still_correct()
        return answer

    def rpc(self, method: str | grpc.UnaryUnaryMultiCallable) -> grpc.UnaryUnaryMultiCallable:
        """A unary method of the inference service, ``grpc.health.v1.Health/Check``, or ``method``."""
        if not isinstance(method, str):
            return method
        if method == "Health/Check":
            from grpc_health.v1 import health_pb2_grpc

            return health_pb2_grpc.HealthStub(self.channel).Check
        return getattr(self.stub, method)

    def check_still_correct(self) -> None:
        """A valid ModelInfer on the same channel gets the NumPy reference's answer."""
        batch = np.random.default_rng(self.attacks).normal(size=(2, *INSTANCE_SHAPE)).astype(np.float32)
        request = pb.ModelInferRequest(model_name="tiny", raw_input_contents=[batch.tobytes()])
        request.inputs.add(name="input", datatype="FP32", shape=batch.shape)
        answer = self.stub.ModelInfer(request, timeout=GRPC_ATTACK_TIMEOUT_S)
        (output,) = answer.outputs
        scores = np.frombuffer(answer.raw_output_contents[0], "<f4").reshape(list(output.shape))
        np.testing.assert_allclose(scores, self.model.reference(batch), **TOLERANCE)


def assert_client_error_status(err: grpc.RpcError, model: WrittenModel) -> None:
    """A status a client error may get, with a message that names no server file or directory."""
    code, details = err.code(), err.details() or ""  # type: ignore[attr-defined]
    assert code in CLIENT_ERROR_CODES, (code, details[:300])
    assert details.strip(), code
    for private in (str(model.path.parent), str(REPO_ROOT), sys.prefix, "Traceback"):
        assert private not in details, details[:300]


def stop_with_a_clean_log(server: ServerProcess, errors_expected: bool = False) -> None:
    """Stops a fuzzed server and asserts that its log (at ``warning``) holds no traceback and, unless
    ``errors_expected`` (models that fail to load log an ERROR for the operator), no ERROR line: a
    fault that an acceptable answer hid, such as a failure grpc logs after the call."""
    log = ""
    if server.process.poll() is None:
        server.process.terminate()
        server.process.wait(timeout=30)
        log = server.process.stdout.read() if server.process.stdout is not None else ""
    server.stop()
    faults = [line for line in log.splitlines()
              if "Traceback" in line or (" ERROR " in line and not errors_expected)]
    assert not faults, log[-3000:]


@pytest.fixture(scope="session")
def fuzz_model(tmp_path_factory: pytest.TempPathFactory) -> WrittenModel:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "tiny.onnx"
    return WrittenModel(path, write_classifier(path, instance_shape=INSTANCE_SHAPE, classes=3, seed=5))


@pytest.fixture(scope="session")
def fuzz_server(fuzz_model: WrittenModel) -> Iterator[ServerProcess]:
    server = ServerProcess("--model", str(fuzz_model.path), "--max-batch-size", "8", "--threads", "1",
                           "--max-body-bytes", str(MAX_BODY_BYTES))
    try:
        yield server.wait_ready()
    finally:
        stop_with_a_clean_log(server)


@pytest.fixture(scope="session")
def fuzz_client(fuzz_server: ServerProcess, fuzz_model: WrittenModel) -> Iterator[FuzzClient]:
    client = FuzzClient(fuzz_server, fuzz_model)
    yield client
    client.connection.close()


@pytest.fixture(scope="session")
def grpc_fuzz_client(fuzz_server: ServerProcess, fuzz_model: WrittenModel) -> Iterator[GrpcFuzzClient]:
    client = GrpcFuzzClient(fuzz_server, fuzz_model)
    yield client
    client.channel.close()
