"""The repository API through ``tritonclient.http`` against a real server, SIGHUP, and swaps under load.

Answers are checked against direct ONNX Runtime runs of each version's file (rtol 1e-5,
atol 1e-6); versions are written with different random weights, so an answer matches exactly one.
"""

import http.client
import json
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import onnxruntime
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.api import schemas
from service.app import create_app
from service.settings import ServeSettings

INPUTS = np.random.default_rng(7).random((16, 8, 8, 1), dtype=np.float32)


def write_version(write_model: Callable[..., Any], root: Path, name: str, version: int, seed: int) -> Path:
    """Writes a version in a hidden staging directory, then renames it into place (as a deployment
    should: a poll never sees half a file)."""
    staging = root / ".staging" / f"{name}-{version}-{seed}"
    write_model(staging / "model.onnx", seed=seed)
    target = root / name / str(version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    os.rename(staging, target)
    return target / "model.onnx"


def direct_run(path: Path, batch: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"input": batch})[0]


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def index(client: triton.InferenceServerClient) -> dict[str, str]:
    return {f"{row['name']}/{row.get('version', '')}": row["state"]
            for row in client.get_model_repository_index()}


def triton_infer(client: triton.InferenceServerClient, name: str,
                 batch: np.ndarray) -> tuple[str, np.ndarray]:
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    result = client.infer(name, [tensor])
    return result.get_response()["model_version"], result.as_numpy("probabilities")


@pytest.fixture
def repository(tmp_path: Path, write_model: Callable[..., Any]) -> Path:
    root = tmp_path / "models"
    write_version(write_model, root, "tiny", 1, seed=21)
    return root


# --- the repository API, through tritonclient -------------------------------------------------------------


def test_tritonclient_repository_api_loads_configures_reports_and_unloads(
        start_server, repository: Path, write_model) -> None:
    server = start_server("--model-repository", str(repository), "--model-control-mode", "explicit",
                          "--threads", "1", "--max-batch-size", "16")
    client = triton.InferenceServerClient(urlsplit(server.url).netloc)
    assert client.get_model_repository_index() == [{"name": "tiny", "version": "1", "state": "READY",
                                                    "reason": ""}]
    v2 = write_version(write_model, repository, "tiny", 2, seed=22)
    write_version(write_model, repository, "other", 1, seed=23)  # not loaded: explicit mode
    assert index(client)["other/"] == "UNLOADED"
    client.load_model("tiny")
    assert index(client) == {"tiny/1": "UNLOADED", "tiny/2": "READY", "other/": "UNLOADED"}
    version, probabilities = triton_infer(client, "tiny", INPUTS[:3])
    assert version == "2"
    np.testing.assert_allclose(probabilities, direct_run(v2, INPUTS[:3]), rtol=1e-5, atol=1e-6)

    config = client.get_model_config("tiny")
    assert (config["name"], config["max_batch_size"], config["version_policy"]) == ("tiny", 16, {"latest": 1})
    client.load_model("tiny", config=json.dumps({"max_batch_size": 2, "instances": 2}))
    assert client.get_model_config("tiny")["max_batch_size"] == 2
    with pytest.raises(InferenceServerException, match="expected at most 2 instances per request"):
        triton_infer(client, "tiny", INPUTS[:3])
    with pytest.raises(InferenceServerException, match="max_batch_size") as refused:
        client.load_model("tiny", config=json.dumps({"max_batch_size": 0}))
    assert refused.value.status() == "400"

    for _ in range(4):
        triton_infer(client, "tiny", INPUTS[:2])
    stats = client.get_inference_statistics("tiny")["model_stats"]
    assert [s["version"] for s in stats] == ["1", "2"]
    current = stats[1]["inference_stats"]
    assert current["success"]["count"] == 4 and current["fail"]["count"] == 1  # the refused batch of 3
    assert current["queue"]["count"] == 4 and current["compute_infer"]["count"] == 4
    assert current["compute_infer"]["ns"] > 0 and current["success"]["ns"] >= current["compute_infer"]["ns"]
    assert stats[1]["inference_count"] == 8 and stats[1]["execution_count"] >= 1
    assert client.get_inference_statistics("tiny", "2")["model_stats"] == [
        s for s in client.get_inference_statistics()["model_stats"] if s["version"] == "2"]

    client.unload_model("tiny")
    assert index(client)["tiny/2"] == "UNLOADED"
    with pytest.raises(InferenceServerException, match="unloaded") as gone:
        triton_infer(client, "tiny", INPUTS[:1])
    assert gone.value.status() == "503"
    with pytest.raises(InferenceServerException, match="not in the repository") as unknown:
        client.load_model("nope")
    assert unknown.value.status() == "404"
    with pytest.raises(InferenceServerException, match="not in the repository") as too_long:
        client.load_model("x" * 5000)  # longer than a file name may be: not found, not a 500
    assert too_long.value.status() == "404"
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    assert 'lc2d_model_ready{model="tiny",version="2"} 0.0' in text
    assert 'lc2d_request_queue_seconds_count{model="tiny",version="2"}' in text
    assert 'lc2d_request_compute_seconds_count{model="tiny",version="2"}' in text
    assert 'lc2d_model_load_seconds{model="tiny",version="2"}' in text


def test_control_routes_answer_clear_errors(repository: Path) -> None:
    settings = ServeSettings(model_repository=repository, device="cpu", threads=1)  # mode none
    with TestClient(create_app(settings)) as client:
        refused = client.post("/v2/repository/models/tiny/load")
        assert refused.status_code == 409 and refused.json()["code"] == "model_control_disabled"
        assert "explicit" in refused.json()["error"]
        assert client.post("/v2/repository/index", content=b"[1]").status_code == 400
        assert client.post("/v2/repository/index", json={"ready": True}).json() == [
            {"name": "tiny", "version": "1", "state": "READY", "reason": ""}]
        assert client.get("/v2/models/nope/config").status_code == 404
        assert client.get("/v2/models/tiny/versions/9/stats").status_code == 404
    settings = ServeSettings(model_repository=repository, device="cpu", threads=1,
                             model_control_mode="explicit")
    with TestClient(create_app(settings)) as client:
        bad = client.post("/v2/repository/models/tiny/load", json={"parameters": {"config": "{not json"}})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_model_config"
        files = client.post("/v2/repository/models/tiny/load",
                            json={"parameters": {"file:1/model.onnx": "AA=="}})
        assert files.status_code == 400 and "not supported" in files.json()["error"]
        assert client.post("/v2/repository/models/nope/unload").status_code == 404
        # The answers are those the OpenAPI document describes (its schemas forbid other fields).
        schemas.ModelControlAnswer.model_validate(client.post("/v2/repository/models/tiny/load").json())
        schemas.RepositoryIndex.model_validate(client.post("/v2/repository/index").json())
        schemas.ModelConfigAnswer.model_validate(client.get("/v2/models/tiny/config").json())
        for path in ("/v2/models/stats", "/v2/models/tiny/stats", "/v2/models/tiny/versions/1/stats"):
            schemas.InferenceStatistics.model_validate(client.get(path).json())
        schemas.ModelControlAnswer.model_validate(client.post("/v2/repository/models/tiny/unload").json())


def test_sighup_rescans_the_repository_at_once(start_server, repository: Path, write_model) -> None:
    server = start_server("--model-repository", str(repository), "--threads", "1")  # mode none
    client = triton.InferenceServerClient(urlsplit(server.url).netloc)
    v2 = write_version(write_model, repository, "tiny", 2, seed=24)
    time.sleep(0.5)
    assert "tiny/2" not in index(client)  # none mode: nothing changes by itself
    os.kill(server.process.pid, signal.SIGHUP)
    wait_until(lambda: index(client).get("tiny/2") == "READY" and index(client).get("tiny/1") == "UNLOADED")
    version, probabilities = triton_infer(client, "tiny", INPUTS[:2])
    assert version == "2"
    np.testing.assert_allclose(probabilities, direct_run(v2, INPUTS[:2]), rtol=1e-5, atol=1e-6)


# --- zero-downtime swap under load --------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What the clients saw."""

    answers: list[tuple[float, float, str, int]] = field(default_factory=list)  # start, end, version, row
    failures: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)


def run_clients(url: str, name: str, clients: int, stop: threading.Event,
                references: dict[str, np.ndarray]) -> tuple[LoadResult, list[threading.Thread]]:
    """Starts ``clients`` keep-alive clients posting one instance each, checking every answer."""
    result = LoadResult()
    lock = threading.Lock()
    host, port = urlsplit(url).netloc.split(":")

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        k = index
        while not stop.is_set():
            row = k % len(INPUTS)
            k += 1
            body = json.dumps({"inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                           "data": INPUTS[row].ravel().tolist()}]})
            started = time.monotonic()
            try:
                connection.request("POST", f"/v2/models/{name}/infer", body,
                                   {"Content-Type": "application/json"})
                answer = connection.getresponse()
                payload = answer.read()
            except OSError as err:
                with lock:
                    result.failures.append(f"client {index}: {err!r}")
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                continue
            ended = time.monotonic()
            with lock:
                if answer.status != 200:
                    result.failures.append(f"{answer.status}: {payload[:200]!r}")
                    continue
                data = json.loads(payload)
                version = data["model_version"]
                values = np.asarray(data["outputs"][0]["data"], dtype=np.float32)
                others = [v for v in references if v != version]
                if version not in references or not np.allclose(values, references[version][row], rtol=1e-5,
                                                                atol=1e-6) or any(
                        np.allclose(values, references[v][row], rtol=1e-5, atol=1e-6) for v in others):
                    result.mixed.append(f"row {row} answered as version {version}: {values[:3]}")
                result.answers.append((started, ended, version, row))
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    return result, threads


@pytest.mark.parametrize("mode", ["explicit", "poll"])
def test_swap_under_load_fails_no_request_and_mixes_no_versions(start_server, tmp_path: Path, write_model,
                                                                  mode: str) -> None:
    root = tmp_path / "models"
    v1 = write_version(write_model, root, "swap", 1, seed=31)
    server = start_server("--model-repository", str(root), "--model-control-mode", mode,
                          "--repository-poll-secs", "0.2", "--threads", "1", "--max-batch-size", "32")
    client = triton.InferenceServerClient(urlsplit(server.url).netloc)
    staged = root / ".staging" / "v2"
    write_model(staged / "model.onnx", seed=32)
    references = {"1": direct_run(v1, INPUTS), "2": direct_run(staged / "model.onnx", INPUTS)}
    assert not np.allclose(references["1"], references["2"], rtol=1e-3)  # versions are told apart

    stop = threading.Event()
    result, threads = run_clients(server.url, "swap", 32, stop, references)
    try:
        wait_until(lambda: len(result.answers) >= 100)  # steady load on version 1
        os.rename(staged, root / "swap" / "2")
        if mode == "explicit":
            client.load_model("swap")
        wait_until(lambda: index(client) == {"swap/1": "UNLOADED", "swap/2": "READY"})
        swapped_at = time.monotonic()
        shutil.rmtree(root / "swap" / "1")  # the old directory removed
        wait_until(lambda: sum(1 for a in result.answers if a[0] > swapped_at) >= 100)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert result.failures == []
    assert result.mixed == []
    versions = [answer[2] for answer in result.answers]
    assert versions.count("1") >= 100 and versions.count("2") >= 100
    assert all(version == "2" for started, _, version, _ in result.answers if started > swapped_at)
    assert index(client) == {"swap/1": "UNLOADED", "swap/2": "READY"}


def test_first_request_after_ready_is_no_slower_than_twice_the_steady_median(
        start_server, tmp_path: Path, write_model) -> None:
    root = tmp_path / "models"
    write_version(write_model, root, "warm", 1, seed=41)
    server = start_server("--model-repository", str(root), "--model-control-mode", "explicit",
                          "--threads", "1")
    client = triton.InferenceServerClient(urlsplit(server.url).netloc)
    batch = INPUTS[:4]

    def timed() -> float:
        started = time.perf_counter()
        triton_infer(client, "warm", batch)
        return time.perf_counter() - started

    ratios = []
    for seed in range(42, 47):  # five reloads: the first request after each, then steady requests
        write_version(write_model, root, "warm", 1, seed=seed)
        client.load_model("warm")
        first = timed()
        ratios.append(first / float(np.median([timed() for _ in range(20)])))
    # Each first request against the steady median right after it (the shared machine's speed
    # drifts between reloads), then the median over the reloads. The target is 2x
    # (benchmarks/bench_swap.py measures it); the bound here is 3x because one request is a few
    # milliseconds of mostly HTTP work on a machine other jobs share.
    assert float(np.median(ratios)) <= 3.0, ratios


def test_a_repository_that_starts_empty_serves_the_first_model_loaded(tmp_path: Path, write_model) -> None:
    root = tmp_path / "models"
    root.mkdir()
    settings = ServeSettings(model_repository=root, device="cpu", threads=1, model_control_mode="explicit")
    with TestClient(create_app(settings)) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/predict", json={"instances": INPUTS[:1].tolist()}).status_code == 404
        v1 = write_version(write_model, root, "late", 1, seed=51)
        assert client.post("/v2/repository/models/late/load").status_code == 200
        answer = client.post("/predict", json={"instances": INPUTS[:2].tolist()})
        assert answer.status_code == 200 and answer.headers["X-Model-Name"] == "late"
        np.testing.assert_allclose(answer.json()["predictions"], direct_run(v1, INPUTS[:2]),
                                   rtol=1e-5, atol=1e-6)
        assert client.get("/v2/health/ready").status_code == 200


def test_control_routes_need_the_api_key_when_keys_are_set(repository: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# operators\nsecret-one\n")
    settings = ServeSettings(model_repository=repository, device="cpu", threads=1,
                             model_control_mode="explicit", api_keys=keys)
    with TestClient(create_app(settings)) as client:
        for method, path in (("POST", "/v2/repository/models/tiny/load"),
                             ("POST", "/v2/repository/models/tiny/unload"), ("POST", "/v2/repository/index"),
                             ("GET", "/v2/models/tiny/config"), ("GET", "/v2/models/tiny/stats")):
            refused = client.request(method, path)
            assert refused.status_code == 401 and refused.json()["code"] == "unauthorized", path
            wrong = client.request(method, path, headers={"Authorization": "Bearer secret-two"})
            assert wrong.status_code == 401, path
        granted = {"Authorization": "Bearer secret-one"}
        assert client.post("/v2/repository/models/tiny/load", headers=granted).status_code == 200
        assert client.post("/v2/repository/index", headers=granted).json()[0]["state"] == "READY"
        assert client.post("/v2/repository/models/tiny/unload", headers=granted).status_code == 200
