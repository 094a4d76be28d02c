"""deploy/kubernetes renders, validates and agrees with the code and the Dockerfile.

Every overlay is rendered with ``kubectl kustomize`` (skipped with a reason where kubectl is
missing); every built-in resource is validated against the Kubernetes OpenAPI schemas of
KUBERNETES_VERSION, strictly (unknown fields fail), by ``kubernetes-validate``. KServe's custom
resources have no schema there: their pod parts are validated as a Pod, the rest is checked here.
The cross-checks build the ServeSettings a pod runs with (the image's CMD or the container's args,
plus its LC2D_* variables) with the CLI's own parser and the settings model.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from tests.deploy import container_files as cf
from tests.deploy import image

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE_ROOT = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUSTOMIZE_ROOT / "overlays").iterdir() if p.is_dir())
KUBERNETES_VERSION = "1.32.0"  # the kubectl on this machine (v1.32); validation is pinned to it
KSERVE_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"),
                ("serving.kserve.io/v1beta1", "InferenceService")}
SERVING_KINDS = {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget"}


def render(path: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: the Kubernetes manifests cannot be rendered here")
    done = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered_overlay(name: str) -> list[dict[str, Any]]:
    return render(KUSTOMIZE_ROOT / "overlays" / name)


def rendered_overlay(name: str) -> tuple[str, list[dict[str, Any]]]:
    """``(name, resources)`` of an overlay, rendered once per test session (a deep copy)."""
    return name, copy.deepcopy(_rendered_overlay(name))


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return rendered_overlay(request.param)


@pytest.fixture(scope="module")
def kserve() -> list[dict[str, Any]]:
    return render(KUSTOMIZE_ROOT / "kserve")


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, received {len(found)}"
    return found[0]


def validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        raise AssertionError(f"{doc['kind']}/{doc['metadata'].get('name')}: {err.message} at "
                             f"{'.'.join(str(p) for p in err.path)}") from err


def as_pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"}, "spec": spec}


def container_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, str]:
    """The container's variables: its envFrom ConfigMaps (resolved in ``docs``), then its env."""
    env: dict[str, str] = {}
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"envFrom names ConfigMap {name!r}, which the overlay does not render"
        env.update(config_maps[name]["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def pod_settings(container: dict[str, Any], docs: list[dict[str, Any]], serve_stage: cf.Stage) -> Any:
    """The ServeSettings the container runs with: its args (else the image's CMD) and its env."""
    argv = container.get("args") or image.cmd(serve_stage)
    return image.serve_settings(argv, container_env(container, docs))


def ports_by_name(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}


def pre_stop_seconds(container: dict[str, Any]) -> int:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, f"expected [sleep, N], received {command}"
    return int(command[1])


def app_get_paths() -> set[str]:
    from service.app import create_app
    from service.settings import ServeSettings

    app = create_app(ServeSettings(model_repository=Path("/models")), load_models=False)
    return {path for path, item in app.openapi()["paths"].items() if "get" in item}


# --- rendering and schemas ---------------------------------------------------------------------

def test_overlays_are_cpu_gpu_and_the_queue_autoscaling_example() -> None:
    assert {"cpu", "gpu"} <= set(OVERLAYS)


def test_overlay_renders_every_serving_resource_once(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    assert sorted(d["kind"] for d in docs) == sorted(SERVING_KINDS)


def test_overlay_resources_validate_against_the_kubernetes_schemas(
        overlay: tuple[str, list[dict[str, Any]]]) -> None:
    for doc in overlay[1]:
        validate(doc)


def test_validation_catches_a_misspelt_field(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    deployment = one(overlay[1], "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(AssertionError, match="readinesProbe"):
        validate(broken)


def test_kserve_renders_a_runtime_and_an_inference_service_whose_pod_parts_validate(
        kserve: list[dict[str, Any]]) -> None:
    assert {(d["apiVersion"], d["kind"]) for d in kserve} == KSERVE_KINDS and len(kserve) == 2
    runtime = one(kserve, "ServingRuntime")["spec"]
    validate(as_pod({"containers": runtime["containers"], "volumes": runtime.get("volumes", [])}))


# --- cross-checks against the code and the Dockerfile -----------------------------------------

def test_lc2d_variables_are_settings_fields_with_valid_values(
        overlay: tuple[str, list[dict[str, Any]]], serve_stage: cf.Stage) -> None:
    from service.settings import ServeSettings

    container = one(overlay[1], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = container_env(container, overlay[1])
    # unknown LC2D_* names would be ignored silently by the settings (extra="ignore")
    assert [k for k in env if not k.startswith("LC2D_")
            or k.removeprefix("LC2D_").lower() not in ServeSettings.model_fields] == []
    settings = pod_settings(container, overlay[1], serve_stage)  # raises when a value is invalid
    for key, value in env.items():  # and each variable reached its field
        field = key.removeprefix("LC2D_").lower()
        wanted = pydantic.TypeAdapter(ServeSettings.model_fields[field].annotation).validate_python(value)
        assert getattr(settings, field) == wanted, key


def test_ports_match_the_image_and_the_settings(overlay: tuple[str, list[dict[str, Any]]],
                                                serve_stage: cf.Stage) -> None:
    docs = overlay[1]
    pod = one(docs, "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    settings = pod_settings(container, docs, serve_stage)
    ports = ports_by_name(container)
    http, grpc = image.exposed_ports(serve_stage)
    assert ports["http"] == settings.port == http
    assert ports["grpc"] == settings.grpc_port == grpc
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(ports["http"])
    service = one(docs, "Service")["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        "http": (ports["http"], "http"), "grpc": (ports["grpc"], "grpc")}


def test_probe_paths_are_the_apps_health_routes_and_the_images_healthcheck(
        overlay: tuple[str, list[dict[str, Any]]], serve_stage: cf.Stage) -> None:
    pod = one(overlay[1], "Deployment")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    paths = app_get_paths()
    probes = {kind: container[kind]["httpGet"]
              for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    readiness = probes["readinessProbe"]["path"]
    assert readiness == image.healthcheck_url(serve_stage).group("path") == "/v2/health/ready"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/v2/health/live"
    assert all(p["path"] in paths and p["port"] == "http" for p in probes.values())
    assert pod["metadata"]["annotations"]["prometheus.io/path"] in paths


def test_pods_run_as_the_images_user_with_a_read_only_root(overlay: tuple[str, list[dict[str, Any]]],
                                                           serve_stage: cf.Stage) -> None:
    spec = one(overlay[1], "Deployment")["spec"]["template"]["spec"]
    uid = image.user_id(serve_stage)
    assert uid != 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == spec["securityContext"]["runAsGroup"] == uid
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # with a read-only root, /tmp must be a writable volume (as docker-compose.yml's tmpfs)
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]] and not mounts["/tmp"].get("readOnly")


def test_model_repository_volume_is_mounted_where_the_server_reads_it(
        overlay: tuple[str, list[dict[str, Any]]], serve_stage: cf.Stage) -> None:
    docs = overlay[1]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    repository = str(pod_settings(container, docs, serve_stage).model_repository)
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == repository)
    assert mount["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    claim = one(docs, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_termination_grace_covers_pre_stop_and_the_servers_drain(
        overlay: tuple[str, list[dict[str, Any]]], serve_stage: cf.Stage) -> None:
    docs = overlay[1]
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    settings = pod_settings(container, docs, serve_stage)
    pre_stop = pre_stop_seconds(container)
    # Kubernetes counts preStop inside the grace period; SIGTERM comes after it, then the server
    # drains for up to drain_timeout_s (uvicorn's graceful shutdown): all must fit, with margin.
    assert 0 < pre_stop < container["readinessProbe"]["periodSeconds"] * 2
    assert spec["terminationGracePeriodSeconds"] >= pre_stop + settings.drain_timeout_s + 5
    # a rolling update never removes a ready pod before its replacement is ready
    assert one(docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_selectors_hpa_and_pdb_target_the_deployments_pods(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    docs = overlay[1]
    deployment = one(docs, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (deployment["spec"]["selector"]["matchLabels"], one(docs, "Service")["spec"]["selector"],
                     one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    # a node drain takes one pod at a time; CPU overlays keep at least two, so one always serves
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert hpa["minReplicas"] >= (1 if overlay[0] == "gpu" else 2)
    assert "cpu" in [m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"]


def test_queue_depth_autoscaling_uses_a_metric_the_server_exports(
        overlay: tuple[str, list[dict[str, Any]]]) -> None:
    from service.metrics import ServiceMetrics

    exported = set(re.findall(r"^# TYPE (\w+) ", ServiceMetrics().render().decode(), flags=re.M))
    metrics = one(overlay[1], "HorizontalPodAutoscaler")["spec"]["metrics"]
    pods_metrics = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert set(pods_metrics) <= exported
    if overlay[0] == "cpu-queue-autoscaling":
        assert pods_metrics == ["lc2d_queue_depth"]


@pytest.mark.parametrize("name", [o for o in OVERLAYS if o.startswith("cpu")])
def test_cpu_overlay_gives_onnx_runtime_the_cores_it_requests(name: str, serve_stage: cf.Stage) -> None:
    overlay = rendered_overlay(name)
    container = one(overlay[1], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    settings = pod_settings(container, overlay[1], serve_stage)
    assert settings.device == "cpu"
    assert settings.threads == int(container["resources"]["requests"]["cpu"])
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_gpu_overlay_requests_a_gpu_and_requires_cuda(serve_stage: cf.Stage) -> None:
    overlay = rendered_overlay("gpu")
    spec = one(overlay[1], "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith(":gpu")  # docker build --build-arg GPU=1 -t lc2d-serve:gpu
    assert pod_settings(container, overlay[1], serve_stage).device == "cuda"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


# --- KServe ------------------------------------------------------------------------------------

def test_kserve_runtime_serves_the_storage_initializers_directory_over_v2(
        kserve: list[dict[str, Any]], serve_stage: cf.Stage) -> None:
    runtime = one(kserve, "ServingRuntime")
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    settings = pod_settings(container, kserve, serve_stage)
    assert str(settings.model_repository) == "/mnt/models"  # where KServe's storage initializer writes
    assert settings.host == "0.0.0.0"
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]
    assert runtime["metadata"]["annotations"]["prometheus.kserve.io/port"] == str(settings.port)
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    paths = app_get_paths()
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready" in paths
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live" in paths
    assert container["securityContext"]["runAsUser"] == image.user_id(serve_stage)


def test_kserve_inference_service_uses_the_runtime_for_an_onnx_model(kserve: list[dict[str, Any]]) -> None:
    runtime = one(kserve, "ServingRuntime")
    model = one(kserve, "InferenceService")["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert re.match(r"^(pvc|s3|gs|https?)://", model["storageUri"])
