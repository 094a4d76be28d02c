"""Ray Serve without a running deployment: options, the Serve config file, shipped models, bad addresses.

The addresses are checked through the real CLI in a subprocess (``lc2d serve --ray`` and
``lc2d score --engine ray``): one line on stderr, exit code 2, well within 15 s.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray.serve")

from service import ray_serve  # noqa: E402
from service.app import create_app  # noqa: E402
from service.errors import RayClusterUnreachableError  # noqa: E402
from service.ray_cluster import parse_ray_address, probe_ray_address  # noqa: E402
from service.settings import ServeSettings  # noqa: E402
from tests.service.conftest import (  # noqa: E402
    REPO_ROOT,
    WrittenModel,
    free_port,
    reference_predict,
    write_classifier,
)

SERVE_CONFIG = REPO_ROOT / "deploy" / "ray" / "serve-config.yaml"
UNREACHABLE_LIMIT_S = 15.0


def test_deployment_options_fixed_replicas_take_the_batchers_queue_and_drain_deadline() -> None:
    settings = ServeSettings(model=[Path("m.onnx")], replicas=3, max_queue=200, request_timeout_ms=12_500,
                             ray_replica_cpus=0.5)
    options = ray_serve.deployment_options(settings)
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["max_ongoing_requests"] == 200
    assert options["graceful_shutdown_timeout_s"] == settings.drain_timeout_s == 12
    assert options["ray_actor_options"] == {"num_cpus": 0.5}
    assert options["logging_config"] == {"log_level": "INFO", "enable_access_log": True}
    quiet = ray_serve.deployment_options(ServeSettings(model=[Path("m.onnx")], log_level="warning"))
    assert quiet["logging_config"] == {"log_level": "WARNING", "enable_access_log": False}


def test_deployment_options_autoscale_scales_on_ongoing_requests() -> None:
    settings = ServeSettings(model=[Path("m.onnx")], autoscale="0:5", target_ongoing_requests=16)
    options = ray_serve.deployment_options(settings)
    assert "num_replicas" not in options
    assert options["autoscaling_config"] == {"min_replicas": 0, "max_replicas": 5,
                                             "target_ongoing_requests": 16}


@pytest.mark.parametrize("value", ["3", "4:2", "a:b", "0:0", ":3"])
def test_settings_autoscale_rejects_what_is_not_min_max(value: str) -> None:
    with pytest.raises(ValueError, match=f"expected MIN:MAX replicas .* received {value!r}"):
        ServeSettings(model=[Path("m.onnx")], autoscale=value)


def test_settings_replicas_and_autoscale_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="expected --replicas or --autoscale, received both"):
        ServeSettings(model=[Path("m.onnx")], replicas=2, autoscale="1:3")


def test_replica_settings_leave_out_the_ray_fields() -> None:
    settings = ServeSettings(model=[Path("m.onnx")], ray=True, ray_address="h:1", replicas=2, threads=1)
    fields = ray_serve.replica_settings(settings)
    assert not set(fields) & set(ray_serve._DRIVER_ONLY)
    assert ServeSettings(**fields).model_dump(exclude=set(ray_serve._DRIVER_ONLY)) == \
        settings.model_dump(exclude=set(ray_serve._DRIVER_ONLY))


def test_serve_config_file_validates_and_builds_the_application_it_documents() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(SERVE_CONFIG.read_text()))
    (app,) = config.applications
    module, _, function = app.import_path.partition(":")
    assert (module, function) == ("service.ray_serve", "build_app")
    assert (app.name, app.route_prefix) == (ray_serve.APP_NAME, "/")
    settings = ServeSettings(**app.args)
    assert settings.model_repository == Path("/models")  # the Dockerfile's repository
    assert settings.threads == settings.ray_replica_cpus  # one ONNX Runtime thread per reserved CPU
    assert settings.autoscale_range is not None
    assert ray_serve.build_app(dict(app.args)) is not None
    for deployment in app.deployments:  # options written in the file must name our deployment
        assert deployment.name == ray_serve.DEPLOYMENT_NAME


def test_replica_health_is_the_apps_readiness(tiny_model: WrittenModel) -> None:
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    app = create_app(ServeSettings(model=[tiny_model.path]))
    replica = SimpleNamespace(_app=app)
    with pytest.raises(RuntimeError, match="no model version of this replica is ready"):
        ray_serve.LC2DReplica.check_health(replica)  # before the lifespan starts the batchers
    with TestClient(app) as client:
        assert client.get("/v2/health/ready").status_code == 200
        ray_serve.LC2DReplica.check_health(replica)
    with pytest.raises(RuntimeError):  # draining after shutdown: not ready again
        ray_serve.LC2DReplica.check_health(replica)


def test_build_app_refuses_shipped_models() -> None:
    with pytest.raises(ValueError, match="ship_models: expected false with `serve deploy`"):
        ray_serve.build_app({"model": ["m.onnx"], "ship_models": True})


def test_shipped_repository_and_file_unpack_to_the_same_models(
        ray_instance: None, model_repository: dict, tmp_path: Path, rng: np.random.Generator) -> None:
    from fastapi.testclient import TestClient

    extra_path = tmp_path / "elsewhere" / "extra.onnx"  # a --model file outside the repository
    extra = write_classifier(extra_path, seed=5)
    settings = ServeSettings(model_repository=model_repository["root"], model=[extra_path], ship_models=True)
    shipped = ray_serve._ship_models(settings)
    fields = ray_serve._relative_paths(ray_serve.replica_settings(settings), ray_serve._models_root(settings))
    unpacked_root = tmp_path / "unpacked"
    unpacked = ServeSettings(**ray_serve.unpack_models(fields, shipped, unpacked_root))
    assert unpacked.model == [unpacked_root / "files" / "extra.onnx"]
    assert unpacked.model_repository == unpacked_root
    assert (unpacked_root / "tiny/2/model.onnx").read_bytes() == model_repository["tiny/2"].path.read_bytes()
    x = rng.random((2, 8, 8, 1)).astype(np.float32)
    body = {"inputs": [{"name": "input", "shape": [2, 8, 8, 1], "datatype": "FP32",
                        "data": x.ravel().tolist()}]}
    with TestClient(create_app(unpacked)) as client:
        answers = {path: client.post(path, json=body)
                   for path in ("/v2/models/tiny/versions/2/infer", "/v2/models/extra/infer")}
    references = (model_repository["tiny/2"].reference, lambda b: reference_predict(extra, b))
    for (path, answer), reference in zip(answers.items(), references, strict=True):
        assert answer.status_code == 200, (path, answer.text)
        np.testing.assert_allclose(np.reshape(answer.json()["outputs"][0]["data"], (2, 10)), reference(x),
                                   rtol=1e-5, atol=1e-6)


# --- unreachable addresses ---------------------------------------------------------------------

@pytest.mark.parametrize("address", ["head", "ray://head", "head:port", ""])
def test_parse_ray_address_needs_host_and_port(address: str) -> None:
    with pytest.raises(RayClusterUnreachableError, match="expected a running Ray cluster at host:port"):
        parse_ray_address(address)


@pytest.fixture
def http_server() -> Iterator[int]:
    """A server that accepts connections but is not Ray (an HTTP/1.1 server)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_probe_refuses_a_port_that_answers_but_is_not_ray(http_server: int, scheme: str) -> None:
    started = time.monotonic()
    with pytest.raises(RayClusterUnreachableError, match=r"which does not answer \(not a Ray"):
        probe_ray_address(f"{scheme}127.0.0.1:{http_server}")
    assert time.monotonic() - started < UNREACHABLE_LIMIT_S


def _run_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "lc2d", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)
    return done, time.monotonic() - started


@pytest.mark.parametrize("verb", ["serve", "score"])
def test_cli_with_an_unreachable_ray_address_fails_in_one_line_with_exit_code_2(
        verb: str, tiny_model: WrittenModel, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    if verb == "serve":
        args = ["serve", "--ray", "--ray-address", address, "--model", str(tiny_model.path)]
    else:
        np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))
        args = ["score", str(tiny_model.path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                "--engine", "ray", "--ray-address", address, "--no-progress"]
    done, elapsed = _run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"lc2d {verb}: error: --ray-address: expected a running Ray cluster at host:port (GCS, default port "
        f"6379) or ray://host:port (client, 10001), received {address!r}, which does not answer "
        "([Errno 111] Connection refused)"]
    assert elapsed < UNREACHABLE_LIMIT_S
    assert not list(tmp_path.glob("y*"))


def test_serve_ray_options_without_ray_fail_with_exit_code_2(tiny_model: WrittenModel) -> None:
    done, _ = _run_cli("serve", "--replicas", "2", "--model", str(tiny_model.path))
    assert done.returncode == 2
    assert done.stderr.strip() == ("lc2d serve: error: --replicas: expected together with --ray, "
                                   "received without it")
