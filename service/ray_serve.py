"""Ray Serve front door: the FastAPI app of ``lc2d serve``, one copy per replica of a deployment.

Each replica builds the same app as ``lc2d serve`` (:func:`service.app.create_app`: every route,
the input contract, a dynamic batcher per model) and Ray Serve's proxy spreads HTTP requests over
the replicas. Ray Serve asks each replica for its health with :meth:`LC2DReplica.check_health`,
which answers what ``/v2/health/ready`` answers.

Two ways to run it:

* ``lc2d serve --ray [--ray-address ADDR] [--replicas N | --autoscale MIN:MAX]`` (see
  :func:`serve_on_ray`), which runs until interrupted and then deletes the application;
* ``serve deploy deploy/ray/serve-config.yaml``, whose ``import_path`` is :func:`build_app`.

Models are read from their paths on the node of each replica (a path every node can read), or,
with ``ship_models``, read once by the driver, put in Ray's object store and written to a
temporary directory by each replica.

Ray is an optional extra (``lc2d-serve[ray]``); only ``--ray`` imports this module.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve import Application

from service.app import create_app
from service.ray_cluster import connect_ray
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service.ray")
APP_NAME = "lc2d"
DEPLOYMENT_NAME = "LC2DServe"
# Settings that configure the Ray deployment itself; a replica never needs them.
_DRIVER_ONLY = ("ray", "ray_address", "replicas", "autoscale", "target_ongoing_requests",
                "ray_replica_cpus", "ship_models")


@serve.ingress()
class LC2DReplica:
    """One replica: loads the models, then serves them with the app of ``lc2d serve``.

    Args:
        settings: :class:`ServeSettings` fields (validated again here, on the replica's node).
        shipped: relative path -> object reference of the file's bytes, when models travel
            through the object store; the paths in ``settings`` are then relative to their root.
    """

    def __init__(self, settings: dict[str, Any], shipped: dict[str, Any] | None = None) -> None:
        if shipped:
            settings = unpack_models(settings, shipped, Path(tempfile.mkdtemp(prefix="lc2d-models-")))
        self._app = create_app(ServeSettings(**settings))
        logger.info("replica pid %d serves %s", os.getpid(),
                    [f"{m.name}/{m.version}" for m in self._app.state.dataplane.all_models()])

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    def check_health(self) -> None:
        """Raises while the replica could not answer inference (``/v2/health/ready`` is 503)."""
        if not self._app.state.dataplane.ready:
            raise RuntimeError("no model version of this replica is ready")

    def pid(self) -> int:
        """The replica's process id (lets tests and operators find one replica's process)."""
        return os.getpid()


def deployment_options(settings: ServeSettings) -> dict[str, Any]:
    """The Ray Serve deployment options that follow from the settings.

    Every request a replica accepts goes to its batcher, so a replica takes as many concurrent
    requests as the batcher queues (``max_queue``); Ray Serve's default of 5 would starve the
    batcher. The graceful shutdown lets queued requests finish within one request deadline, as
    ``lc2d serve`` does on SIGTERM. Logging follows ``log_level``.
    """
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": settings.max_queue,
        "ray_actor_options": {"num_cpus": settings.ray_replica_cpus},
        "graceful_shutdown_timeout_s": settings.drain_timeout_s,
        "health_check_period_s": 2.0,
        # as uvicorn under `lc2d serve`: one access line per request only at info and debug
        "logging_config": {"log_level": settings.log_level.upper(),
                           "enable_access_log": settings.log_level in ("info", "debug")},
    }
    scale = settings.autoscale_range
    if scale is None:
        options["num_replicas"] = settings.replicas or 1
    else:
        options["autoscaling_config"] = {"min_replicas": scale[0], "max_replicas": scale[1],
                                         "target_ongoing_requests": settings.target_ongoing_requests}
    return options


def replica_settings(settings: ServeSettings) -> dict[str, Any]:
    """The settings a replica is built from: every field set, minus the Ray-only ones."""
    fields = settings.model_dump(mode="json", exclude=set(_DRIVER_ONLY))
    return {k: v for k, v in fields.items() if v is not None}


def application(settings: ServeSettings) -> Application:
    """The Ray Serve application of ``settings`` (bound, not yet running)."""
    shipped = _ship_models(settings) if settings.ship_models else None
    fields = replica_settings(settings)
    if shipped is not None:
        fields = _relative_paths(fields, _models_root(settings))
    deployment = serve.deployment(LC2DReplica).options(**deployment_options(settings))  # type: ignore[attr-defined]
    return deployment.bind(fields, shipped)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for ``serve deploy`` / ``serve run``: ``args`` are ServeSettings fields.

    ``LC2D_*`` environment variables of the process that builds the application fill the fields
    ``args`` leave out, as for ``lc2d serve``.
    """
    settings = ServeSettings(**args)
    if settings.ship_models:
        # the builder runs in a short-lived task: objects it put in the store would die with it
        raise ValueError("ship_models: expected false with `serve deploy` (models must be on a path every "
                         "node can read), received true")
    return application(settings)


def serve_on_ray(settings: ServeSettings, on_ready: Callable[[], None] | None = None) -> None:
    """Runs the application on Ray until Ctrl-C or SIGTERM, then deletes it.

    Joins ``settings.ray_address`` (or starts a local Ray instance), starts Ray Serve's HTTP proxy
    on ``settings.host:settings.port`` unless Serve already runs on the cluster, and deploys.

    Args:
        settings: server settings, Ray fields included.
        on_ready: called once every replica is up.

    Raises:
        RayClusterUnreachableError: the address does not answer.
    """
    started = connect_ray(settings.ray_address)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        serve.run(application(settings), name=APP_NAME, route_prefix="/", blocking=False)
        if on_ready is not None:
            on_ready()
        _wait_for_interrupt()
        serve.delete(APP_NAME)
    finally:
        if started and settings.ray_address is None:  # our own local instance
            serve.shutdown()
            ray.shutdown()


def _wait_for_interrupt() -> None:
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def _models_root(settings: ServeSettings) -> Path:
    """The directory the shipped files are relative to: the repository, else the first file's."""
    if settings.model_repository is not None:
        return settings.model_repository.resolve()
    return settings.model[0].resolve().parent


def _model_files(settings: ServeSettings) -> list[Path]:
    files = [p.resolve() for p in settings.model]
    if settings.model_repository is not None:
        files += sorted(p.resolve() for p in settings.model_repository.rglob("*") if p.is_file())
    return files


def _ship_models(settings: ServeSettings) -> dict[str, Any]:
    """Puts every model file in the object store: relative path -> object reference."""
    root = _models_root(settings)
    shipped = {}
    for path in _model_files(settings):
        relative = os.path.relpath(path, root)
        if relative.startswith(".."):  # a --model file outside the repository
            relative = f"files/{path.name}"
        shipped[relative] = ray.put(path.read_bytes())
    return shipped


def _relative_paths(fields: dict[str, Any], root: Path) -> dict[str, Any]:
    fields = dict(fields)
    if "model_repository" in fields:
        fields["model_repository"] = "."
    models = []
    for path in fields.get("model", []):
        relative = os.path.relpath(Path(path).resolve(), root)
        models.append(f"files/{Path(path).name}" if relative.startswith("..") else relative)
    fields["model"] = models
    return fields


def unpack_models(fields: dict[str, Any], shipped: dict[str, Any], root: Path) -> dict[str, Any]:
    """Writes shipped model files under ``root``; returns ``fields`` with paths pointing there."""
    for relative, ref in shipped.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ray.get(ref))
    fields = dict(fields)
    if "model_repository" in fields:
        fields["model_repository"] = str(root / fields["model_repository"])
    fields["model"] = [str(root / p) for p in fields.get("model", [])]
    return fields
