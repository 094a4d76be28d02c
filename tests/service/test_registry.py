"""The model registry in process: policies, config errors, load/unload, swaps, faults, polling.

Real ONNX Runtime sessions of small classifiers written to a temporary repository; answers are
checked against the NumPy reference of the weights each version was written with (rtol 1e-5).
"""

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import (
    InvalidModelConfigError,
    ModelControlDisabledError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, VersionState
from service.repository import ModelCatalog
from service.settings import ServeSettings

BATCH = np.random.default_rng(5).random((3, 8, 8, 1), dtype=np.float32)


def reference(weights: Any, batch: np.ndarray) -> np.ndarray:
    logits = batch.reshape(len(batch), -1).astype(np.float64) @ weights.kernel + weights.bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


class Repository:
    """A temporary repository whose versions remember their weights."""

    def __init__(self, root: Path, write: Callable[..., Any]) -> None:
        self.root = root
        self._write = write
        self.weights: dict[tuple[str, str], Any] = {}

    def add(self, name: str, version: int, seed: int) -> None:
        self.weights[(name, str(version))] = self._write(self.root / name / str(version) / "model.onnx",
                                                         seed=seed)

    def break_version(self, name: str, version: int) -> None:
        path = self.root / name / str(version) / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an ONNX protobuf")

    def configure(self, name: str, **values: Any) -> None:
        (self.root / name / "config.json").write_text(json.dumps(values))

    def expected(self, name: str, version: str, batch: np.ndarray = BATCH) -> np.ndarray:
        return reference(self.weights[(name, version)], batch)


@pytest.fixture
def repo(tmp_path: Path, write_model: Callable[..., Any]) -> Repository:
    return Repository(tmp_path / "models", write_model)


def make_registry(repo: Repository, mode: str = "explicit", poll_secs: float = 15.0,
                  **settings: Any) -> ModelRegistry:
    options = ServeSettings(model_repository=repo.root, device="cpu", threads=1, **settings)
    registry = ModelRegistry(ModelCatalog(repository=repo.root), options, ServiceMetrics(),
                             mode=mode, poll_secs=poll_secs)  # type: ignore[arg-type]
    registry.load_all()
    return registry


def serve(registry: ModelRegistry, scenario: Callable[[], Awaitable[None]]) -> None:
    """Runs ``scenario`` with the registry started, then stops it."""

    async def run() -> None:
        await registry.start()
        try:
            await scenario()
        finally:
            await registry.stop()

    asyncio.run(run())


async def answer(registry: ModelRegistry, name: str = "tiny", version: str | None = None,
                 batch: np.ndarray = BATCH) -> tuple[str, np.ndarray]:
    async with registry.lease(name, version) as item:
        assert item.batcher is not None
        outputs = await item.batcher.submit(batch)
        return item.version, outputs["probabilities"]


def states(registry: ModelRegistry) -> dict[str, tuple[str, str]]:
    return {f"{row.name}/{row.version}": (row.state, row.reason) for row in registry.index()}


async def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# --- policies and configuration ---------------------------------------------------------------------


def test_latest_policy_serves_only_the_highest_version_by_default(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    repo.add("tiny", 2, seed=2)
    registry = make_registry(repo, mode="none")

    async def scenario() -> None:
        assert {key: state for key, (state, _) in states(registry).items()} == {"tiny/2": "READY"}
        assert 'lc2d_model_ready{model="tiny",version="2"} 1.0' in registry.metrics.render().decode()
        version, probabilities = await answer(registry)
        assert version == "2"
        np.testing.assert_allclose(probabilities, repo.expected("tiny", "2"), rtol=1e-5, atol=1e-7)

    serve(registry, scenario)


def test_specific_policy_lists_a_missing_version_as_failed(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    repo.add("tiny", 2, seed=2)
    repo.configure("tiny", version_policy={"specific": [1, 3]})
    registry = make_registry(repo, mode="none")
    found = states(registry)
    assert found["tiny/1"][0] == "WARMING"  # loaded and warmed, ready once the loop runs
    assert "tiny/2" not in found
    assert found["tiny/3"][0] == "FAILED" and "lists version 3" in found["tiny/3"][1]


def test_invalid_config_marks_its_model_not_ready_and_the_others_serve(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    repo.add("other", 1, seed=2)
    repo.configure("tiny", max_batch_sise=4)
    registry = make_registry(repo, mode="none")

    async def scenario() -> None:
        state, reason = states(registry)["tiny/1"]
        assert state == "FAILED" and "max_batch_sise" in reason and "Extra inputs" in reason
        with pytest.raises(ModelNotReadyError, match="max_batch_sise"):
            registry.find_ready("tiny")
        with pytest.raises(ModelNotReadyError, match="no valid configuration"):
            registry.config("tiny")
        assert (await answer(registry, "other"))[0] == "1"

    serve(registry, scenario)


def test_config_limits_reach_the_batcher_and_the_limits(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    repo.configure("tiny", max_batch_size=4, max_delay_ms=3, instances=2, warmup=[2])
    registry = make_registry(repo, mode="none", max_batch_size=64)

    async def scenario() -> None:
        item = registry.find_ready("tiny")
        assert item.batcher is not None and item.pool is not None
        batcher = item.batcher
        assert (batcher.max_batch_size, batcher.max_delay_s, batcher.concurrency) == (4, 0.003, 2)
        assert len(item.pool.instances) == 2 and item.limits.max_batch_size == 4
        assert item.warmup_seconds > 0 and item.load_seconds > 0
        assert registry.config("tiny").public()["warmup"] == [2]

    serve(registry, scenario)


# --- explicit control ----------------------------------------------------------------------------------


def test_load_swaps_to_a_new_version_only_after_it_is_warm(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo)

    async def scenario() -> None:
        old = registry.find_ready("tiny")
        repo.add("tiny", 2, seed=2)
        loading = asyncio.create_task(registry.load("tiny"))
        seen: set[str] = set()
        while not loading.done():  # v1 answers until v2 is ready; no request fails meanwhile
            version, probabilities = await answer(registry)
            np.testing.assert_allclose(probabilities, repo.expected("tiny", version), rtol=1e-5, atol=1e-7)
            seen.add(version)
            await asyncio.sleep(0)
        await loading
        assert "1" in seen
        assert states(registry) == {"tiny/1": ("UNLOADED", "replaced"), "tiny/2": ("READY", "")}
        assert old.pool is None and old.batcher is None  # sessions released
        version, probabilities = await answer(registry)
        assert version == "2"
        np.testing.assert_allclose(probabilities, repo.expected("tiny", "2"), rtol=1e-5, atol=1e-7)
        text = registry.metrics.render().decode()
        assert 'lc2d_model_ready{model="tiny",version="1"} 0.0' in text
        assert 'lc2d_model_ready{model="tiny",version="2"} 1.0' in text
        assert 'lc2d_model_loads_total{model="tiny"} 2.0' in text
        assert 'lc2d_model_unloads_total{model="tiny"} 1.0' in text
        assert 'lc2d_model_warmup_seconds{model="tiny",version="2"}' in text

    serve(registry, scenario)


def test_broken_new_version_never_replaces_a_working_one(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo)

    async def scenario() -> None:
        repo.break_version("tiny", 2)
        with pytest.raises(ModelLoadError, match="version 2: .*not a loadable ONNX model"):
            await registry.load("tiny")
        found = states(registry)
        assert found["tiny/2"][0] == "FAILED" and "not a loadable ONNX model" in found["tiny/2"][1]
        assert found["tiny/1"][0] == "READY" and "still serving" in found["tiny/1"][1]
        version, probabilities = await answer(registry)
        assert version == "1"
        np.testing.assert_allclose(probabilities, repo.expected("tiny", "1"), rtol=1e-5, atol=1e-7)
        assert 'lc2d_model_load_failures_total{model="tiny"} 1.0' in registry.metrics.render().decode()

    serve(registry, scenario)


def test_changed_file_fails_to_reload_and_the_previous_file_keeps_serving(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo)

    async def scenario() -> None:
        repo.break_version("tiny", 1)
        with pytest.raises(ModelLoadError):
            await registry.load("tiny")
        state, reason = states(registry)["tiny/1"]
        assert state == "READY" and "the previous one still serves" in reason
        probabilities = (await answer(registry))[1]
        np.testing.assert_allclose(probabilities, repo.expected("tiny", "1"), rtol=1e-5, atol=1e-7)

    serve(registry, scenario)


def test_unload_lets_requests_in_flight_finish(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo)

    async def scenario() -> None:
        async with registry.lease("tiny") as item:  # a request that resolved v1, still reading its body
            unloading = asyncio.create_task(registry.unload("tiny"))
            await asyncio.sleep(0.1)
            assert item.state is VersionState.DRAINING and not unloading.done()
            with pytest.raises(ModelNotReadyError, match="draining"):
                registry.find_ready("tiny")
            assert item.batcher is not None
            outputs = await item.batcher.submit(BATCH)  # still served
            np.testing.assert_allclose(outputs["probabilities"], repo.expected("tiny", "1"),
                                       rtol=1e-5, atol=1e-7)
        await asyncio.wait_for(unloading, 10)
        assert states(registry)["tiny/1"] == ("UNLOADED", "unloaded by request")
        assert item.pool is None
        with pytest.raises(ModelNotReadyError, match="unloaded"):
            registry.find_ready("tiny")
        await registry.load("tiny")
        assert (await answer(registry))[0] == "1"

    serve(registry, scenario)


def test_load_with_a_config_override_applies_it_until_the_next_plain_load(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo, max_batch_size=64)

    async def scenario() -> None:
        await registry.load("tiny", {"max_batch_size": 2})
        assert registry.find_ready("tiny").limits.max_batch_size == 2
        with pytest.raises(InvalidModelConfigError, match="max_batch_size"):
            await registry.load("tiny", {"max_batch_size": -1})
        assert registry.find_ready("tiny").limits.max_batch_size == 2  # nothing changed
        await registry.load("tiny")
        assert registry.find_ready("tiny").limits.max_batch_size == 64

    serve(registry, scenario)


def test_load_of_an_unknown_model_is_404_and_control_needs_explicit_mode(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    explicit, fixed = make_registry(repo), make_registry(repo, mode="poll")

    async def scenario() -> None:
        with pytest.raises(ModelNotFoundError):
            await explicit.load("nope")
        with pytest.raises(ModelNotFoundError):
            await explicit.unload("nope")
        with pytest.raises(ModelControlDisabledError, match="explicit"):
            await fixed.load("tiny")
        with pytest.raises(ModelControlDisabledError):
            await fixed.unload("tiny")

    serve(explicit, scenario)


def test_concurrent_load_and_unload_calls_are_serialised(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo)

    async def scenario() -> None:
        calls = [registry.load("tiny"), registry.unload("tiny"), registry.load("tiny"),
                 registry.unload("tiny"), registry.load("tiny")]
        await asyncio.gather(*calls)
        # In call order: the last load wins, and exactly one version holds sessions.
        assert states(registry) == {"tiny/1": ("READY", "")}
        text = registry.metrics.render().decode()
        assert 'lc2d_model_unloads_total{model="tiny"} 2.0' in text
        assert 'lc2d_model_loads_total{model="tiny"} 3.0' in text  # start-up, then two reloads

    serve(registry, scenario)


# --- rescans -----------------------------------------------------------------------------------------


def test_poll_mode_follows_the_repository(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo, mode="poll", poll_secs=0.1)

    async def scenario() -> None:
        repo.add("tiny", 2, seed=2)  # a new version directory
        await wait_for(lambda: states(registry).get("tiny/1", ("",))[0] == "UNLOADED")
        assert states(registry)["tiny/2"] == ("READY", "")
        shutil.rmtree(repo.root / "tiny" / "1")
        repo.add("tiny", 2, seed=3)  # the same version, a changed file
        deadline = time.monotonic() + 20
        while True:  # the new file serves once reloaded
            probabilities = (await answer(registry))[1]
            if np.allclose(probabilities, repo.expected("tiny", "2"), rtol=1e-5, atol=1e-7):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        repo.configure("tiny", max_batch_size=5)  # a changed config.json applies
        await wait_for(lambda: registry.find("tiny").ready
                       and registry.find("tiny").limits.max_batch_size == 5)
        shutil.rmtree(repo.root / "tiny")  # the model directory removed
        await wait_for(lambda: states(registry)["tiny/2"][0] == "UNLOADED")
        assert states(registry)["tiny/2"][1] == "removed from the repository"

    serve(registry, scenario)


def test_rescan_in_none_mode_applies_the_repository_once(repo: Repository) -> None:
    repo.add("tiny", 1, seed=1)
    registry = make_registry(repo, mode="none")

    async def scenario() -> None:
        repo.add("tiny", 2, seed=2)
        repo.add("late", 1, seed=4)
        await asyncio.sleep(0.3)
        assert "tiny/2" not in states(registry)  # none mode: nothing changes by itself
        await registry.rescan()  # what SIGHUP does
        assert states(registry)["tiny/2"][0] == "READY" and states(registry)["late/1"][0] == "READY"
        assert states(registry)["tiny/1"][0] == "UNLOADED"

    serve(registry, scenario)
