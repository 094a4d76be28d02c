"""The server the fuzz tests attack, and the client that checks it after every attack.

``LC2D_FUZZ_EXAMPLES`` sets the examples per test (small in ``make test``, large in ``make fuzz``).
Every attack goes over one keep-alive connection, followed by a valid request on the same
connection whose answer is compared with the NumPy reference: a server that crashed, closed the
connection without saying so, or mixed up answers fails there.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from tests.service.conftest import ServerProcess, WrittenModel, write_classifier

EXAMPLES = int(os.environ.get("LC2D_FUZZ_EXAMPLES", "40"))
FUZZ_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                         derandomize="LC2D_FUZZ_EXAMPLES" not in os.environ,
                         suppress_health_check=list(HealthCheck))
"""Hypothesis settings of every fuzz test: derandomised (reproducible) unless a fuzz run asks."""
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
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
        np.testing.assert_allclose(answer.json()["predictions"], self.model.reference(batch), **TOLERANCE)


def assert_no_server_error(answer: Answer) -> None:
    """No 5xx caused by the request; every error is a JSON body with ``error`` and ``code``."""
    assert answer.status < 500, answer.body[:300]
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), answer.headers
        body = answer.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body.get("code"), body
        assert "Traceback" not in body["error"] and "/site-packages/" not in body["error"], body


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
        server.stop()


@pytest.fixture(scope="session")
def fuzz_client(fuzz_server: ServerProcess, fuzz_model: WrittenModel) -> Iterator[FuzzClient]:
    client = FuzzClient(fuzz_server, fuzz_model)
    yield client
    client.connection.close()
