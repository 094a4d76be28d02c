"""The Dockerfile, .dockerignore and docker-compose.yml agree with the code they package.

Fast and static: nothing is built here (``make container-check`` builds and runs the image).
The checks read the files, then ask the code itself: the CLI parser parses the image's CMD,
the FastAPI app answers the healthcheck path, ServeSettings validates Compose's LC2D_* values.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import container_files as cf
from tests.deploy import image

ROOT = Path(__file__).resolve().parents[2]
SERVE_STAGE = "serve"
CACHE_AND_BUILD_PATHS = (".venv", "artifacts", ".git", ".pytest_cache", ".ruff_cache", ".mypy_cache",
                         "models/__pycache__", "lc2d_serve.egg-info", "build", "dist")
HEAVY_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "tf-keras", "torch")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return cf.load_compose(ROOT / "docker-compose.yml")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- Dockerfile --------------------------------------------------------------------------------

def test_parse_dockerfile_serving_stage_is_last(dockerfile: cf.Dockerfile) -> None:
    names = [s.name for s in dockerfile.stages]
    assert names[-1] == SERVE_STAGE
    assert {"requirements", "builder"} <= set(names)


def test_cmd_entry_point_is_the_lc2d_console_script(serve_stage: cf.Stage, pyproject: dict[str, Any]) -> None:
    import lc2d.cli

    assert image.cmd(serve_stage)[0] in pyproject["project"]["scripts"]
    module, _, function = pyproject["project"]["scripts"]["lc2d"].partition(":")
    assert module == "lc2d.cli" and callable(getattr(lc2d.cli, function))


def test_cmd_parses_as_lc2d_serve_on_all_interfaces(serve_stage: cf.Stage) -> None:
    settings = image.serve_settings(image.cmd(serve_stage))
    assert (settings.host, settings.model_repository) == ("0.0.0.0", Path("/models"))


def test_expose_ports_match_cmd_http_and_grpc_ports_and_healthcheck_port(serve_stage: cf.Stage) -> None:
    http, grpc = image.exposed_ports(serve_stage)
    settings = image.serve_settings(image.cmd(serve_stage))
    assert (http, grpc) == (settings.port, settings.grpc_port)
    assert http == int(image.healthcheck_url(serve_stage).group("port"))


def test_healthcheck_path_is_the_readiness_route_of_the_app(serve_stage: cf.Stage) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import ServeSettings

    path = image.healthcheck_url(serve_stage).group("path")
    app = create_app(ServeSettings(model_repository=Path("/models")), load_models=False)
    assert "get" in app.openapi()["paths"].get(path, {}), f"{path} is not a GET route of the app"
    with TestClient(app) as client:  # no model loaded: the readiness route must say "not ready"
        answer = client.get(path)
    assert answer.status_code == 503 and answer.json() == {"ready": False}


def test_healthcheck_fails_on_http_errors(serve_stage: cf.Stage) -> None:
    check = serve_stage.last("HEALTHCHECK")
    assert check is not None
    args = check.json_args()
    assert args is not None and args[0] == "CMD"
    # urlopen raises on 503, so the exit status follows readiness; curl is not in python:3.11-slim
    assert args[1] == "python" and "urllib.request.urlopen" in args[-1]
    assert {"interval", "timeout", "start-period", "retries"} <= set(check.flags())


def test_serving_stage_runs_as_non_root(serve_stage: cf.Stage) -> None:
    user = serve_stage.last("USER")
    assert user is not None, "the serving stage has no USER"
    name = user.value.split(":")[0]
    assert name not in ("root", "0"), f"expected a non-root user, received {user.value!r}"
    created = " ".join(i.value for i in serve_stage.all("RUN"))
    assert re.search(rf"useradd\b.*--uid {re.escape(name)}\b", created), "USER's uid is never created"


def test_copy_sources_exist_and_survive_dockerignore(dockerfile: cf.Dockerfile) -> None:
    patterns = cf.dockerignore_patterns(ROOT / ".dockerignore")
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            if "from" in instruction.flags():
                continue
            for source in cf.copy_sources(instruction):
                assert (ROOT / source).exists(), f"line {instruction.line}: COPY source {source} is missing"
                if source != ".":
                    assert not cf.is_ignored(source, patterns), f"{source} is excluded by .dockerignore"


def test_copy_from_names_an_earlier_stage(dockerfile: cf.Dockerfile) -> None:
    seen: list[str | None] = []
    for stage in dockerfile.stages:
        for instruction in stage.all("COPY"):
            source_stage = instruction.flags().get("from")
            if source_stage is not None:
                assert source_stage in seen, f"line {instruction.line}: no earlier stage {source_stage!r}"
        seen.append(stage.name)


def test_context_keeps_the_package_sources(pyproject: dict[str, Any]) -> None:
    patterns = cf.dockerignore_patterns(ROOT / ".dockerignore")
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    needed = ["pyproject.toml", pyproject["project"]["readme"], *(f"{p}/__init__.py" for p in packages)]
    assert [n for n in needed if cf.is_ignored(n, patterns)] == []


def test_dockerignore_excludes_venv_artifacts_and_caches() -> None:
    patterns = cf.dockerignore_patterns(ROOT / ".dockerignore")
    kept = [p for p in CACHE_AND_BUILD_PATHS if not cf.is_ignored(p, patterns)]
    assert kept == [], f"these would be sent to the build: {kept}"
    assert cf.is_ignored("service/api/__pycache__/v2.cpython-311.pyc", patterns)


def test_serving_stage_installs_base_dependencies_only(serve_stage: cf.Stage,
                                                       pyproject: dict[str, Any]) -> None:
    base = " ".join(pyproject["project"]["dependencies"]).lower()
    assert [p for p in HEAVY_PACKAGES if re.search(rf"\b{re.escape(p)}\b(?!-gpu|runtime)", base)] == []
    runs = " ".join(i.value for i in serve_stage.all("RUN"))
    assert "train.txt" not in runs and "[train]" not in runs
    assert "--no-deps" in runs, "the project wheel must be installed without pulling dependencies again"


def test_requirements_stage_renders_pyproject_dependencies(dockerfile: cf.Dockerfile,
                                                           pyproject: dict[str, Any],
                                                           tmp_path: Path) -> None:
    run = dockerfile.stage("requirements").last("RUN")
    assert run is not None
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["bash", "-ec", run.value], cwd=tmp_path, env=env, check=True, timeout=60)
    read = lambda name: (tmp_path / name).read_text().splitlines()  # noqa: E731
    assert read("base.txt") == pyproject["project"]["dependencies"]
    assert read("train.txt") == pyproject["project"]["optional-dependencies"]["train"]
    gpu = read("base-gpu.txt")
    assert [r for r in gpu if re.match(r"onnxruntime(?!-gpu)", r)] == []
    assert len([r for r in gpu if r.startswith("onnxruntime-gpu")]) == 1
    assert len(gpu) == len(read("base.txt"))


def test_gpu_build_arg_selects_cuda_base(dockerfile: cf.Dockerfile, serve_stage: cf.Stage) -> None:
    args = dockerfile.global_args
    assert args["GPU"] == "", "the default image must be the CPU one"
    assert "cudnn-runtime" in args["CUDA_IMAGE"] and args["PYTHON_IMAGE"].endswith("python:3.11-slim")
    assert re.search(r"cuda:13\.", args["CUDA_IMAGE"]), "PyPI's onnxruntime-gpu 1.31 needs CUDA 13"
    assert args["SERVE_IMAGE"] == "${GPU:+$CUDA_IMAGE}"
    assert serve_stage.base == "${SERVE_IMAGE:-$PYTHON_IMAGE}"
    assert "base${GPU:+-gpu}.txt" in " ".join(i.value for i in serve_stage.all("RUN"))


@pytest.mark.parametrize(("value", "accepted"), [("", True), ("1", True), ("0", False), ("yes", False)])
def test_gpu_build_arg_refuses_values_other_than_1(serve_stage: cf.Stage, value: str, accepted: bool) -> None:
    run = next(i for i in serve_stage.all("RUN") if i.value.startswith("case "))
    guard = run.value.split(" && ")[0]
    result = subprocess.run(["bash", "-c", guard], env={"GPU": value, "PATH": os.environ["PATH"]},
                            capture_output=True, text=True, timeout=10)
    assert (result.returncode == 0) == accepted
    if not accepted:
        assert f"received '{value}'" in result.stderr and "expected 1" in result.stderr


# --- docker-compose.yml ------------------------------------------------------------------------

def test_compose_serve_publishes_the_exposed_ports_on_distinct_host_ports(compose: dict[str, Any],
                                                                          serve_stage: cf.Stage) -> None:
    host_ports: list[str] = []
    for name in ("serve", "serve-gpu"):
        ports = cf.with_defaults(compose["services"][name]["ports"])
        assert [int(p.rsplit(":", 1)[1]) for p in ports] == image.exposed_ports(serve_stage)
        host_ports += [p.rsplit(":", 1)[0] for p in ports]
    assert len(set(host_ports)) == len(host_ports), f"both profiles up at once would clash: {host_ports}"


def test_compose_healthcheck_matches_dockerfile(compose: dict[str, Any], serve_stage: cf.Stage) -> None:
    check = serve_stage.last("HEALTHCHECK")
    assert check is not None
    for name in ("serve", "serve-gpu"):
        service = compose["services"][name]
        assert service["healthcheck"]["test"] == check.json_args()
        assert service["restart"] == "unless-stopped"


def test_compose_volume_mounts_the_cmd_model_repository(compose: dict[str, Any],
                                                        serve_stage: cf.Stage) -> None:
    repository = str(image.serve_settings(image.cmd(serve_stage)).model_repository)
    for name in ("serve", "serve-gpu", "score"):
        targets = [v.split(":")[1] for v in cf.with_defaults(compose["services"][name]["volumes"])]
        assert repository in targets, f"{name} does not mount {repository}"
    assert "models" in compose["volumes"]


def test_compose_lc2d_variables_are_valid_serve_settings(compose: dict[str, Any]) -> None:
    from service.settings import ServeSettings

    for name in ("serve", "serve-gpu"):
        environment = cf.with_defaults(compose["services"][name]["environment"])
        fields_known = ServeSettings.model_fields
        unknown = [k for k in environment if k.removeprefix("LC2D_").lower() not in fields_known]
        assert unknown == [] and all(k.startswith("LC2D_") for k in environment)
        fields = {k.removeprefix("LC2D_").lower(): v for k, v in environment.items()}
        settings = ServeSettings(model_repository=Path("/models"), **fields)  # raises when a value is invalid
        assert settings.device == ("cuda" if name == "serve-gpu" else "auto")


def test_compose_defaults_equal_the_server_defaults(compose: dict[str, Any]) -> None:
    from service.settings import ServeSettings

    environment = cf.with_defaults(compose["services"]["serve"]["environment"])
    parsed = ServeSettings(model_repository=Path("/models"),
                           **{k.removeprefix("LC2D_").lower(): v for k, v in environment.items()})
    plain = ServeSettings(model_repository=Path("/models"))
    assert parsed == plain


def test_compose_gpu_profile_reserves_an_nvidia_gpu(compose: dict[str, Any],
                                                    dockerfile: cf.Dockerfile) -> None:
    gpu = compose["services"]["serve-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert set(gpu["build"]["args"]) <= set(dockerfile.global_args) and gpu["build"]["args"]["GPU"] == "1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_compose_score_job_runs_lc2d_score(compose: dict[str, Any]) -> None:
    from lc2d.cli import VERBS

    score = compose["services"]["score"]
    assert score["profiles"] == ["jobs"] and score["restart"] == "no"
    assert score["image"] == compose["services"]["serve"]["image"]
    assert score["build"] == compose["services"]["serve"]["build"], "score must build the serving image"
    command = cf.with_defaults(score["command"])
    assert command[:2] == ["lc2d", "score"] and "score" in VERBS
    try:
        import lc2d.commands.score  # noqa: F401  (written in parallel; parse only when it exists)
    except ModuleNotFoundError:
        pytest.skip("lc2d.commands.score is not written yet")
    args = image.cli_args(command)
    assert args.verb == "score"


# --- the readers themselves --------------------------------------------------------------------

def test_parse_logical_lines_joins_continuations_and_drops_comments() -> None:
    text = "# c\nFROM a AS b\nRUN one \\\n  # inside\n  two\n\nCMD [\"x\"]\n"
    assert cf.logical_lines(text) == [(2, "FROM a AS b"), (3, "RUN one two"), (7, 'CMD ["x"]')]


def test_is_ignored_last_matching_pattern_wins() -> None:
    patterns = ["artifacts", "**/__pycache__", "docs", "!docs/keep.md"]
    assert cf.is_ignored("artifacts/models/digits/1/model.onnx", patterns)
    assert cf.is_ignored("a/b/__pycache__/c.pyc", patterns)
    assert cf.is_ignored("docs/other.md", patterns)
    assert not cf.is_ignored("docs/keep.md", patterns)
    assert not cf.is_ignored("service/app.py", patterns)


def test_with_defaults_resolves_compose_interpolation() -> None:
    resolved = cf.with_defaults(["${A:-8000}:8000", "${B}", {"k": "${C:-x}/y"}])
    assert resolved == ["8000:8000", "", {"k": "x/y"}]
