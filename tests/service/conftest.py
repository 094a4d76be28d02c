"""Fixtures of the service tests: small ONNX models written with ``onnx.helper``, real servers.

``write_classifier`` builds ``input [N, *shape] -> Flatten -> MatMul -> Add -> Softmax`` with
random weights and the ``lc2d.*`` metadata of docs/model-format.md; ``with_metadata=False``
writes the same graph with no metadata at all. ``reference_predict`` is the independent NumPy
computation of the same function.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.model_format import build_metadata


@dataclass(frozen=True)
class ClassifierWeights:
    """Weights of the test classifier, kept to compute the NumPy reference."""

    kernel: np.ndarray  # [features, classes]
    bias: np.ndarray  # [classes]


def write_classifier(path: Path, *, instance_shape: tuple[int, ...] = (8, 8, 1), classes: int = 10,
                     seed: int = 0, with_metadata: bool = True, labels: list[str] | None = None,
                     name: str = "tiny") -> ClassifierWeights:
    """Writes a softmax classifier and returns its weights.

    Args:
        path: where to write the ``.onnx`` file (parents created).
        instance_shape: one instance's shape; the batch axis is dynamic.
        classes: number of output classes.
        seed: seed of the random weights.
        with_metadata: write the ``lc2d.*`` metadata properties.
        labels: class names for ``lc2d.labels``; defaults to ``"0"..`` when metadata is written.
        name: ``lc2d.model_name``.

    Returns:
        The weights, for :func:`reference_predict`.
    """
    rng = np.random.default_rng(seed)
    features = int(np.prod(instance_shape))
    weights = ClassifierWeights(kernel=rng.normal(0, 0.5, (features, classes)).astype(np.float32),
                                bias=rng.normal(0, 0.1, classes).astype(np.float32))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "kernel"], ["logits_nobias"]),
         helper.make_node("Add", ["logits_nobias", "bias"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *instance_shape])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights.kernel, "kernel"), numpy_helper.from_array(weights.bias, "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        labels = labels if labels is not None else [str(i) for i in range(classes)]
        helper.set_model_props(model, build_metadata(
            model_name=name, input_name="input", input_shape=instance_shape, output_names=["probabilities"],
            labels=labels, versions={"lc2d-serve": "0.1.0"}))
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return weights


def reference_predict(weights: ClassifierWeights, batch: np.ndarray) -> np.ndarray:
    """The classifier computed with NumPy in float64 (independent of ONNX Runtime)."""
    logits = batch.reshape(len(batch), -1).astype(np.float64) @ weights.kernel + weights.bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


# --- fixtures -------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WrittenModel:
    """A written test model and what is needed to check its answers."""

    path: Path
    weights: ClassifierWeights

    def reference(self, batch: np.ndarray) -> np.ndarray:
        return reference_predict(self.weights, batch)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service_models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> WrittenModel:
    """[8, 8, 1] -> 10 softmax classifier with full lc2d metadata and labels "0".."9"."""
    path = model_dir / "tiny.onnx"
    return WrittenModel(path, write_classifier(path, seed=1))


@pytest.fixture(scope="session")
def plain_model(model_dir: Path) -> WrittenModel:
    """The same kind of classifier, [4, 4, 3] -> 5, without any metadata."""
    path = model_dir / "plain.onnx"
    return WrittenModel(path, write_classifier(path, instance_shape=(4, 4, 3), classes=5, seed=2,
                                            with_metadata=False))


@pytest.fixture(scope="session")
def model_repository(model_dir: Path) -> dict[str, WrittenModel | Path]:
    """A repository: tiny versions 1 and 2 (different weights, both served: its config.json says
    ``{"version_policy": {"all": true}}``), plain version 3, broken version 1."""
    root = model_dir / "repository"
    v1 = root / "tiny" / "1" / "model.onnx"
    v2 = root / "tiny" / "2" / "model.onnx"
    plain = root / "plain" / "3" / "model.onnx"
    broken = root / "broken" / "1" / "model.onnx"
    models: dict[str, WrittenModel | Path] = {
        "root": root,
        "tiny/1": WrittenModel(v1, write_classifier(v1, seed=11)),
        "tiny/2": WrittenModel(v2, write_classifier(v2, seed=12)),
        "plain/3": WrittenModel(plain, write_classifier(plain, instance_shape=(4, 4, 3), classes=5, seed=13,
                                                     with_metadata=False)),
    }
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not an ONNX protobuf")
    (root / "tiny" / "config.json").write_text(json.dumps({"version_policy": {"all": True}}))
    return models


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``python -m lc2d serve ...`` on 127.0.0.1, free HTTP and gRPC ports, waited until live."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()  # a later --grpc-port in args wins (argparse keeps the last)
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        command = [sys.executable, "-m", "lc2d", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--grpc-port", str(self.grpc_port), "--log-level", "warning", *args]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_ready(self, timeout_s: float = 30.0) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise RuntimeError(f"server exited {self.process.returncode}: {output}")
            try:
                with urllib.request.urlopen(self.url + "/v2/health/live", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not live after {timeout_s} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="session")
def live_server(tiny_model: WrittenModel) -> Iterator[ServerProcess]:
    """A real server of ``tiny_model`` with batching (shared by the live tests)."""
    server = ServerProcess("--model", str(tiny_model.path), "--max-batch-size", "64", "--threads", "1")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


@pytest.fixture
def start_server() -> Iterator[object]:
    """Starts extra servers with given ``lc2d serve`` arguments; stops them after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, wait: bool = True) -> ServerProcess:
        server = ServerProcess(*args)
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def write_model() -> object:
    """:func:`write_classifier`, for tests that build their own repositories."""
    return write_classifier
