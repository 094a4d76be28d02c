"""The model registry (control plane): which model versions exist, in which state, and why.

Every served model version is a :class:`ModelVersion` owned here, moving through
``LOADING -> WARMING -> READY -> DRAINING -> UNLOADED`` (or ``FAILED`` with a reason). Routes ask
the registry for a ready version (:meth:`ModelRegistry.find_ready`) and hold a lease on it while
they use it (:meth:`ModelRegistry.lease`); nothing else holds sessions.

Changes come from the repository on disk, read again by :meth:`ModelRegistry.rescan` (every
``--repository-poll-secs`` in ``poll`` mode, on SIGHUP in every mode) or for one model by
:meth:`ModelRegistry.load` / :meth:`ModelRegistry.unload` (``explicit`` mode, the repository API).
One rule makes swaps safe: a new version is loaded and warmed up *before* it becomes routable,
and only then do the versions it replaces stop taking requests, finish the ones they hold
(leases and queued requests) and release their sessions. A version that fails to load never
replaces one that works. Calls that change one model are serialised by a lock per model.

Example:
    >>> registry = ModelRegistry(ModelCatalog(repository=Path("models")), settings, metrics)
    >>> registry.load_all()                 # at start-up, before the event loop serves
    >>> await registry.start()              # batchers on the running loop; polling in poll mode
    >>> async with registry.lease("digits") as version:
    ...     outputs = await version.batcher.submit(batch)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import numpy as np

from service.batching import DynamicBatcher
from service.contract import InputContract, InputLimits
from service.errors import (
    InvalidModelConfigError,
    MalformedRequestError,
    ModelControlDisabledError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    ServiceError,
)
from service.metrics import ServiceMetrics
from service.model_config import ModelConfig, ServingOptions, read_model_config
from service.model_stats import InferenceStats
from service.repository import FileDigest, ModelCatalog, ModelEntry, is_version_name
from service.runtime import InstancePool, LoadedModel, load_instances

logger = logging.getLogger("lc2d.service")

ModelControlMode = Literal["none", "poll", "explicit"]
MODEL_CONTROL_MODES: tuple[str, ...] = ("none", "poll", "explicit")
_DRAIN_POLL_S = 0.005


class VersionState(StrEnum):
    """Where a model version is in its life."""

    LOADING = "LOADING"
    WARMING = "WARMING"
    READY = "READY"
    DRAINING = "DRAINING"
    UNLOADED = "UNLOADED"
    FAILED = "FAILED"


@dataclass(eq=False)
class ModelVersion:
    """One version of one model: its configuration, sessions, batcher, state and statistics.

    Attributes:
        name: the served name.
        version: the version string.
        path: its ``.onnx`` file.
        config: the model's configuration it was loaded with (limits, batching, sessions).
        state: where it is in its life.
        reason: why it is not ready (or what went wrong around it while it serves).
        pool: its ONNX Runtime sessions while loaded.
        batcher: its queue while ready or draining.
        digest: what file was loaded (to notice a changed file).
        stats: its inference statistics.
        load_seconds: time to create the sessions.
        warmup_seconds: time to run the warmup batches.
        leases: requests that resolved this version and have not finished with it.
    """

    name: str
    version: str
    path: Path
    config: ModelConfig
    state: VersionState = VersionState.LOADING
    reason: str = ""
    pool: InstancePool | None = field(default=None, repr=False)
    batcher: DynamicBatcher | None = field(default=None, repr=False)
    digest: FileDigest | None = None
    stats: InferenceStats = field(default_factory=InferenceStats, repr=False)
    load_seconds: float = 0.0
    warmup_seconds: float = 0.0
    leases: int = 0

    @property
    def ready(self) -> bool:
        """True while it takes new requests."""
        return (self.state is VersionState.READY and self.batcher is not None
                and not self.batcher.closing)

    @property
    def model(self) -> LoadedModel | None:
        """Its first session (contract and providers), or None when not loaded."""
        return self.pool.first if self.pool is not None and self.pool.instances else None

    @property
    def contract(self) -> InputContract:
        """What its file accepts and returns (raises when not loaded)."""
        if self.model is None:
            raise ModelNotReadyError(self.not_ready_message())
        return self.model.contract

    @property
    def limits(self) -> InputLimits:
        """The serving limits of its configuration."""
        return self.config.limits

    def not_ready_message(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"model {self.name!r} version {self.version} is {self.state.value.lower()}{why}"


@dataclass(frozen=True)
class IndexEntry:
    """One row of the repository index (``POST /v2/repository/index``)."""

    name: str
    version: str | None
    state: str
    reason: str

    def to_json(self) -> dict[str, str]:
        body = {"name": self.name, "state": self.state, "reason": self.reason}
        if self.version is not None:
            body["version"] = self.version
        return body


@dataclass
class _ModelRecord:
    """What the registry keeps per model name."""

    name: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    config: ModelConfig | None = None
    config_error: str = ""
    override: Mapping[str, Any] | None = None


class ModelRegistry:
    """Owns every model version and applies the repository to them.

    Args:
        catalog: where models are found on disk.
        defaults: the server's settings, defaults of every model's configuration.
        metrics: where load, unload, readiness and batch metrics go.
        mode: ``none`` (load at start-up; SIGHUP rescans), ``poll`` (rescan every
            ``poll_secs``), ``explicit`` (the load/unload API changes models).
        poll_secs: seconds between rescans in ``poll`` mode.
    """

    def __init__(self, catalog: ModelCatalog, defaults: ServingOptions, metrics: ServiceMetrics,
                 *, mode: ModelControlMode = "none", poll_secs: float = 15.0) -> None:
        if mode not in MODEL_CONTROL_MODES:
            raise ValueError(f"expected mode to be one of {list(MODEL_CONTROL_MODES)}, received {mode!r}")
        self.catalog = catalog
        self.defaults = defaults
        self.metrics = metrics
        self.mode = mode
        self.poll_secs = poll_secs
        self._models: dict[str, _ModelRecord] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # per name, whole calls: load, unload, rescan
        self._running = False
        self._poller: asyncio.Task[None] | None = None
        self._rescan_task: asyncio.Task[None] | None = None

    # --- start-up and shutdown -------------------------------------------------------------------

    def load_all(self) -> None:
        """Loads every model version the repository and policies name (blocking).

        Run once before serving; :meth:`start` then warms the loaded versions up and makes them
        ready.

        Raises:
            ModelLoadError: a ``--model`` file failed to load; ProviderUnavailableError: the
                requested device is unavailable.
        """
        for name, entry in self.catalog.scan().items():
            record = self._record(name)
            config = self._read_config(name, entry, record)
            if config is None:
                self._fail_versions(record, entry, sorted(entry.versions, key=_version_key)[-1:])
                continue
            wanted, missing = _plan(entry, config)
            self._record_missing(record, entry, config, missing)
            for version in wanted:
                item = ModelVersion(name, version, entry.versions[version], config)
                record.versions[version] = item
                error = self._load(item)
                required = entry.required and item.path in self.catalog.files  # a --model file
                if error is not None and (required or error.code == "provider_unavailable"):
                    raise error  # start-up stops with this one message
                if error is not None:
                    logger.error("%s", item.not_ready_message())

    async def start(self) -> None:
        """Warms up every loaded version and makes it ready (needs the running loop); starts polling."""
        self._running = True
        for record in self._models.values():
            for item in record.versions.values():
                if item.state is not VersionState.WARMING:
                    self.metrics.model_ready(item.name, item.version, False)
                elif await self._activate(item) is not None:
                    logger.error("%s", item.not_ready_message())
        if self.mode == "poll":
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="repository-poll")

    async def stop(self) -> None:
        """Stops polling, then finishes every queued request and stops every batcher."""
        self._running = False
        for task in (self._poller, self._rescan_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for item in self.all_versions():
            if item.batcher is not None:
                await item.batcher.close()
            self.metrics.model_ready(item.name, item.version, False)

    # --- lookup ------------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Known model names, sorted."""
        return sorted(self._models)

    def all_versions(self) -> list[ModelVersion]:
        """Every version the registry holds, by name then version."""
        return [item for name in self.names() for item in self.versions(name).values()]

    def versions(self, name: str) -> dict[str, ModelVersion]:
        """Versions of a model by version string, in version order.

        Raises:
            ModelNotFoundError: unknown name (404).
        """
        record = self._models.get(name)
        if record is None:
            raise ModelNotFoundError(f"model {name!r} is not served; served models: {self.names()}",
                                     expected=self.names(), received=name)
        return {v: record.versions[v] for v in sorted(record.versions, key=_version_key)}

    def find(self, name: str, version: str | None = None) -> ModelVersion:
        """The requested version; without one, the version requests go to (ready or not).

        That is the configured ``default_version``, else the highest ready version, else the
        highest version.

        Raises:
            ModelNotFoundError: unknown name or version (404).
        """
        versions = self.versions(name)
        if version is None:
            config = self._models[name].config
            if config is not None and config.default_version is not None:
                version = str(config.default_version)
            else:
                ordered = list(reversed(versions.values()))
                if not ordered:
                    raise ModelNotReadyError(f"model {name!r} has no version loaded")
                return next((item for item in ordered if item.ready), ordered[0])
        if version not in versions:
            known = list(versions)
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}; versions: {known}",
                                     expected=known, received=version)
        return versions[version]

    def find_ready(self, name: str, version: str | None = None) -> ModelVersion:
        """Like :meth:`find`, raising :class:`ModelNotReadyError` (503) when it cannot serve."""
        item = self.find(name, version)
        if not item.ready:
            raise ModelNotReadyError(item.not_ready_message())
        return item

    @contextlib.asynccontextmanager
    async def lease(self, name: str, version: str | None = None) -> AsyncIterator[ModelVersion]:
        """A ready version, kept from being unloaded until the block ends.

        A version being replaced stops taking new leases, but finishes every leased request. The
        block is one request: its time and outcome (an exception is a failure) go to the
        version's statistics.
        """
        item = self.find_ready(name, version)
        item.leases += 1
        started, ok = time.perf_counter(), False
        try:
            yield item
            ok = True
        finally:
            item.leases -= 1
            item.stats.request_done(time.perf_counter() - started, ok)

    @property
    def any_ready(self) -> bool:
        """True when at least one version can serve."""
        return any(item.ready for item in self.all_versions())

    def config(self, name: str) -> ModelConfig:
        """The configuration a model's versions are served with.

        Raises:
            ModelNotFoundError: unknown name (404); ModelNotReadyError: its configuration is
                invalid and it has never had a valid one (503, with the reason).
        """
        self.versions(name)
        config = self._models[name].config
        if config is None:
            raise ModelNotReadyError(f"model {name!r} has no valid configuration: "
                                     f"{self._models[name].config_error}")
        return config

    # --- the repository API ------------------------------------------------------------------------

    def index(self) -> list[IndexEntry]:
        """Every model and version, with state and reason; models on disk never loaded included."""
        rows = [IndexEntry(item.name, item.version, item.state.value, item.reason)
                for item in self.all_versions()]
        try:
            on_disk = self.catalog.scan()
        except ServiceError:
            on_disk = {}
        rows += [IndexEntry(name, None, VersionState.UNLOADED.value, "not loaded")
                 for name in sorted(set(on_disk) - set(self._models))]
        return sorted(rows, key=lambda row: (row.name, _version_key(row.version or "0")))

    async def load(self, name: str, config_override: Mapping[str, Any] | None = None) -> None:
        """Loads (or reloads) a model from the repository, as its version policy says.

        New versions are warmed up before they take requests; versions they replace are then
        drained and unloaded before this returns. ``config_override`` is used instead of the
        model's ``config.json`` until the next load without one.

        Raises:
            ModelControlDisabledError: the mode is not ``explicit`` (409).
            InvalidModelConfigError: a bad override (400); nothing changes.
            ModelNotFoundError: no such model in the repository (404).
            ModelLoadError: a version (or the configuration) failed to load; the versions that
                served before keep serving (503).
        """
        self._require_explicit("load")
        if config_override is not None:  # refused before anything changes
            ModelConfig.for_model(self.defaults, config_override, where="the load request's config")
        async with self._lock(name):
            entry = await asyncio.to_thread(self.catalog.find, name)
            if entry is None:
                if name in self._models:
                    await self._apply(name, None)
                raise ModelNotFoundError(f"model {name!r} is not in the repository", received=name)
            self._record(name).override = config_override
            failures = await self._apply(name, entry)
        if failures:
            raise ModelLoadError(f"model {name!r} did not load completely: " + "; ".join(failures),
                                 failures=failures)

    async def unload(self, name: str) -> None:
        """Stops a model's versions taking requests, lets queued and leased ones finish, frees them.

        Raises:
            ModelControlDisabledError: the mode is not ``explicit`` (409).
            ModelNotFoundError: no such model (404).
        """
        self._require_explicit("unload")
        async with self._lock(name):
            if name not in self._models:
                raise ModelNotFoundError(f"model {name!r} is not served; served models: {self.names()}",
                                         expected=self.names(), received=name)
            record = self._models[name]
            record.override = None
            await self._retire(_current(record), "unloaded by request")
            for version, item in list(record.versions.items()):
                if item.state is VersionState.FAILED:
                    del record.versions[version]

    def stats(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """Inference statistics in Triton's layout: every version, one model's, or one version's.

        Raises:
            ModelNotFoundError: unknown name or version (404).
            MalformedRequestError: a version without a model name (400), which gRPC can send.
        """
        if name is None:
            if version is not None:
                raise MalformedRequestError(f"statistics of version {version!r} need a model name, "
                                            f"received none", expected="a model name", received="")
            items = self.all_versions()
        elif version is None:
            items = list(self.versions(name).values())
        else:
            items = [self.find(name, version)]
        return [item.stats.to_json(item.name, item.version) for item in items
                if item.state is not VersionState.FAILED]

    async def rescan(self) -> None:
        """Applies the repository as it is now to every model (to the loaded ones in explicit mode)."""
        try:
            on_disk = await asyncio.to_thread(self.catalog.scan)
        except ServiceError as err:
            logger.error("repository rescan failed: %s", err)
            return
        if self.mode == "explicit":
            names = [name for name in self.names()
                     if any(item.state is not VersionState.UNLOADED for item in self.versions(name).values())]
        else:
            names = sorted(set(on_disk) | set(self._models))
        for name in names:
            async with self._lock(name):
                await self._apply(name, on_disk.get(name))

    def request_rescan(self) -> None:
        """Starts a rescan soon (SIGHUP); one already running covers this request."""
        if not self._running or (self._rescan_task is not None and not self._rescan_task.done()):
            return
        self._rescan_task = asyncio.get_running_loop().create_task(self.rescan(), name="repository-rescan")

    # --- applying the repository to one model --------------------------------------------------------

    async def _apply(self, name: str, entry: ModelEntry | None) -> list[str]:
        """Brings one model in line with its directory (the caller holds its lock); returns what failed."""
        record = self._record(name)
        if entry is None:
            await self._retire(_current(record), "removed from the repository")
            return []
        config = self._read_config(name, entry, record)
        if config is None:
            if not any(item.ready for item in record.versions.values()):
                self._fail_versions(record, entry, sorted(entry.versions, key=_version_key)[-1:])
            return [record.config_error]
        wanted, missing = _plan(entry, config)
        failures = self._record_missing(record, entry, config, missing)
        replaced: list[ModelVersion] = []
        for version in wanted:
            failure = await self._bring_up(record, version, entry.versions[version], config, replaced)
            if failure:
                failures.append(failure)
        replaced += self._unwanted(record, wanted, missing)
        await self._retire(replaced, "replaced")
        return failures

    async def _bring_up(self, record: _ModelRecord, version: str, path: Path,
                        config: ModelConfig, replaced: list[ModelVersion]) -> str | None:
        """Makes ``version`` ready from ``path`` unless an identical one already serves."""
        old = record.versions.get(version)
        if (old is not None and old.ready and old.config == config and old.digest is not None
                and not await asyncio.to_thread(old.digest.changed, path)):
            old.reason = ""
            return None
        item = ModelVersion(record.name, version, path, config)
        serving = old is not None and old.ready
        if not serving:
            record.versions[version] = item  # visible as LOADING, then WARMING
        error = await asyncio.to_thread(self._load, item)
        if error is None:
            error = await self._activate(item)
        if error is not None:
            logger.error("%s", item.not_ready_message())
            if serving:
                assert old is not None
                old.reason = ("a new file or configuration failed to load, the previous one still "
                              f"serves: {item.reason}")
            else:
                record.versions[version] = item
            return f"version {version}: {item.reason}"
        record.versions[version] = item
        if old is not None and old is not item and old.state is not VersionState.UNLOADED:
            replaced.append(old)
        return None

    def _unwanted(self, record: _ModelRecord, wanted: Sequence[str],
                  missing: Sequence[str]) -> list[ModelVersion]:
        """Versions the policy no longer selects, except ready ones standing in for failed ones."""
        shortfall = sum(not record.versions[v].ready for v in wanted)
        leaving: list[ModelVersion] = []
        for version in sorted(record.versions, key=_version_key, reverse=True):
            item = record.versions[version]
            if version in wanted or version in missing or item.state is VersionState.UNLOADED:
                continue
            if item.state is VersionState.FAILED:
                del record.versions[version]
            elif item.ready and shortfall > 0:
                shortfall -= 1
                item.reason = "still serving: a version the policy selects failed to load"
            else:
                leaving.append(item)
        return leaving

    async def _retire(self, items: Sequence[ModelVersion], reason: str) -> None:
        """Drains and unloads versions, all at once."""
        await asyncio.gather(*(self._drain(item, reason) for item in items))

    async def _drain(self, item: ModelVersion, reason: str) -> None:
        """No new requests; leased and queued ones finish; then the sessions are released."""
        if item.state is VersionState.FAILED:
            item.state, item.reason = VersionState.UNLOADED, reason
            return
        item.state, item.reason = VersionState.DRAINING, reason
        self.metrics.model_ready(item.name, item.version, False)
        # A leased request may still be reading its body before it reaches the queue; the
        # deadline of a request bounds how long that can take.
        deadline = time.monotonic() + item.config.request_timeout_ms / 1000.0 + 1.0
        while item.leases > 0 and time.monotonic() < deadline:
            await asyncio.sleep(_DRAIN_POLL_S)
        if item.batcher is not None:
            await item.batcher.close()
        if item.pool is not None:
            item.pool.close()
        item.batcher, item.pool = None, None
        item.state = VersionState.UNLOADED
        self.metrics.model_unloaded(item.name, item.version)
        logger.info("unloaded model %s version %s (%s)", item.name, item.version, reason)

    # --- one version --------------------------------------------------------------------------------

    def _load(self, item: ModelVersion) -> ServiceError | None:
        """Creates the sessions (blocking); WARMING after, FAILED with the reason on error."""
        config = item.config
        try:
            started = time.perf_counter()
            item.digest = FileDigest.of(item.path) if item.path.is_file() else None
            item.pool = load_instances(item.path, config.instances, config.device, config.threads,
                                       name=item.name, version=item.version, spin=config.spin,
                                       fp16=config.tensorrt_fp16)
            item.load_seconds = time.perf_counter() - started
        except ServiceError as err:
            self._failed(item, err.message)
            return err
        except OSError as err:
            self._failed(item, f"cannot read {item.path}: {err}")
            return ModelLoadError(item.reason, path=str(item.path))
        item.state = VersionState.WARMING
        return None

    def _failed(self, item: ModelVersion, reason: str) -> None:
        if item.pool is not None:
            item.pool.close()
        item.pool, item.state, item.reason = None, VersionState.FAILED, reason
        self.metrics.model_load_failed(item.name)
        self.metrics.model_ready(item.name, item.version, False)

    async def _activate(self, item: ModelVersion) -> ServiceError | None:
        """Gives a loaded version its batcher, warms it up through it, and makes it ready.

        The warmup batches go the way requests go (the batcher's worker threads, every
        session), so that first-run costs in any of them (ONNX Runtime's arena growth, per-thread
        buffers) are paid before the version is routable. They count in no statistic.
        """
        config = item.config
        assert item.pool is not None
        item.batcher = DynamicBatcher(
            item.pool.run, max_batch_size=config.max_batch_size, max_delay_s=config.max_delay_ms / 1000.0,
            max_queue=config.max_queue, observer=item.stats, name=f"{item.name}/{item.version}",
            concurrency=config.instances)
        item.batcher.start()
        started = time.perf_counter()
        try:
            await _warm_up(item.batcher, item.pool.first.contract, config.warmup_sizes, config.instances)
        except (ServiceError, MemoryError) as err:  # MemoryError: a batch too large for this machine
            await item.batcher.close()
            item.batcher = None
            failure = err if isinstance(err, ServiceError) else ModelLoadError(
                f"the warmup batch does not fit in memory: {err!r}")
            self._failed(item, f"warmup failed: {failure.message}")
            return failure
        item.warmup_seconds = time.perf_counter() - started
        item.stats.reset(forward=self.metrics.batch_observer(item.name, item.version))
        item.state, item.reason = VersionState.READY, ""
        self.metrics.model_loaded(item.name, item.version, item.load_seconds, item.warmup_seconds)
        self.metrics.provider_in_use(item.name, item.version, item.pool.first.providers[0])
        self.metrics.model_ready(item.name, item.version, True)
        logger.info("model %s version %s from %s: loaded in %.2f s, warmed up in %.2f s (batches %s)",
                    item.name, item.version, item.path, item.load_seconds, item.warmup_seconds,
                    list(config.warmup_sizes))
        return None

    # --- configuration and policy ---------------------------------------------------------------------

    def _read_config(self, name: str, entry: ModelEntry, record: _ModelRecord) -> ModelConfig | None:
        """The model's configuration, or None after marking the reason on its versions."""
        try:
            config = read_model_config(entry.config_path, self.defaults, record.override)
        except InvalidModelConfigError as err:
            self.metrics.model_load_failed(name)
            logger.error("model %s: %s", name, err.message)
            record.config_error = err.message
            for item in record.versions.values():
                if item.ready:
                    item.reason = f"{err.message}; still serving with the previous configuration"
            if not any(item.ready for item in record.versions.values()):
                record.config = None
            return None
        record.config, record.config_error = config, ""
        return config

    def _fail_versions(self, record: _ModelRecord, entry: ModelEntry, versions: Sequence[str]) -> None:
        """Lists versions as FAILED with the configuration error (the model is not served)."""
        for version in versions:
            item = ModelVersion(entry.name, version, entry.versions[version],
                                ModelConfig.for_model(self.defaults))
            item.state, item.reason = VersionState.FAILED, record.config_error
            record.versions[version] = item
            self.metrics.model_ready(entry.name, version, False)

    def _record_missing(self, record: _ModelRecord, entry: ModelEntry, config: ModelConfig,
                        missing: Sequence[str]) -> list[str]:
        """Lists ``specific`` versions that have no directory as FAILED."""
        failures = []
        for version in missing:
            reason = (f"version_policy.specific lists version {version}, but the repository has "
                      f"versions {sorted(entry.versions, key=_version_key)}")
            if version not in record.versions or not record.versions[version].ready:
                record.versions[version] = ModelVersion(entry.name, version, Path(), config,
                                                        state=VersionState.FAILED, reason=reason)
            failures.append(reason)
        return failures

    def _lock(self, name: str) -> asyncio.Lock:
        if name not in self._locks:
            self._locks[name] = asyncio.Lock()
        return self._locks[name]

    def _record(self, name: str) -> _ModelRecord:
        if name not in self._models:
            self._models[name] = _ModelRecord(name)
        return self._models[name]

    def _require_explicit(self, action: str) -> None:
        if self.mode != "explicit":
            raise ModelControlDisabledError(
                f"{action} needs --model-control-mode explicit; this server runs in {self.mode!r} mode",
                expected="explicit", received=self.mode)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_secs)
            try:
                await self.rescan()
            except Exception:  # keep polling whatever one rescan met
                logger.exception("repository poll failed")


def _current(record: _ModelRecord) -> list[ModelVersion]:
    """The versions of a model that are not unloaded yet (failed ones included)."""
    return [item for item in record.versions.values() if item.state is not VersionState.UNLOADED]


async def _warm_up(batcher: DynamicBatcher, contract: InputContract, sizes: Sequence[int],
                   concurrency: int) -> None:
    """Runs random batches of each size through the batcher, ``concurrency`` at once (one per
    worker thread and session). Free dimensions (models without metadata) are taken as 1."""
    shape = [d or 1 for d in contract.instance_shape]
    rng = np.random.default_rng(0)
    for size in sizes:
        batch = rng.random((size, *shape), dtype=np.float32)
        await asyncio.gather(*(batcher.submit(batch) for _ in range(concurrency)))


def _plan(entry: ModelEntry, config: ModelConfig) -> tuple[list[str], list[str]]:
    """The versions to serve (on disk) and the ``specific`` ones that are not on disk."""
    wanted = config.version_policy.select(list(entry.versions))
    missing = [str(v) for v in config.version_policy.specific or () if str(v) not in entry.versions]
    return wanted, missing


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if is_version_name(version) else (-1, version)
