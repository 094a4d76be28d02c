"""``lc2d serve``: serve ONNX models over HTTP with ONNX Runtime and dynamic batching."""

from __future__ import annotations

import argparse
import logging
import os

from lc2d.errors import UsageError
from lc2d.options import add_model_options, model_from_args
from service.settings import ServeSettings

HELP = "Serve exported .onnx models over HTTP (TensorFlow Serving REST and Open Inference Protocol)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`~service.settings.ServeSettings` (unset: ``LC2D_*`` or default)."""
    add_model_options(parser, ServeSettings)


def run(args: argparse.Namespace) -> int:
    """Loads the models (failing with one line if one cannot be served), then runs uvicorn."""
    import uvicorn

    from service.app import create_app
    from service.errors import ServiceError

    settings = model_from_args(ServeSettings, args)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.ray:
        return _run_on_ray(settings)
    _check_not_ray_only(settings)
    try:
        app = create_app(settings)
    except ServiceError as err:
        raise UsageError(err.message) from err
    plane = app.state.dataplane
    for item in plane.all_models():
        state = f"providers {item.model.providers}" if item.model else f"NOT READY: {item.reason}"
        print(f"lc2d serve: {item.name} version {item.version} from {item.path}: {state}", flush=True)
    print(f"lc2d serve: http://{settings.host}:{settings.port} (docs at /docs, default model "
          f"{plane.default_model!r}, pid {os.getpid()})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=settings.drain_timeout_s)
    return 0


def _check_not_ray_only(settings: ServeSettings) -> None:
    given = [f"--{name.replace('_', '-')}" for name in ("ray_address", "replicas", "autoscale", "ship_models")
             if getattr(settings, name)]
    if given:
        raise UsageError(f"{', '.join(given)}: expected together with --ray, received without it")


def _run_on_ray(settings: ServeSettings) -> int:
    """Deploys on Ray Serve and waits for Ctrl-C / SIGTERM; then deletes the application."""
    import importlib.util

    from service.errors import ServiceError

    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.serve") is None:
        raise UsageError("--ray: expected Ray Serve to be installed, received an environment without it; "
                         "pip install 'lc2d-serve[ray]'")
    from service.ray_serve import APP_NAME, serve_on_ray

    def announce() -> None:
        print(f"lc2d serve: Ray Serve application {APP_NAME!r} on http://{settings.host}:{settings.port} "
              f"(docs at /docs, pid {os.getpid()}); Ctrl-C or SIGTERM deletes it", flush=True)

    try:
        serve_on_ray(settings, on_ready=announce)
    except ServiceError as err:
        raise UsageError(err.message) from err
    return 0
