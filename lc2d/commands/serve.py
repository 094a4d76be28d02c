"""``lc2d serve``: serve ONNX models over HTTP with ONNX Runtime and dynamic batching."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys

from lc2d.errors import UsageError
from lc2d.options import add_model_options, model_from_args
from service.settings import ServeSettings

HELP = ("Serve exported .onnx models over HTTP (TensorFlow Serving REST, Open Inference Protocol) "
        "and gRPC (Open Inference Protocol).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per field of :class:`~service.settings.ServeSettings` (unset: ``LC2D_*`` or default)."""
    add_model_options(parser, ServeSettings)


def run(args: argparse.Namespace) -> int:
    """Loads the models (failing with one line if one cannot be served), then runs uvicorn."""
    import uvicorn

    from service.app import create_app
    from service.connections import ConnectionLimits, guarded_protocol
    from service.errors import ServiceError

    settings = model_from_args(ServeSettings, args)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.ray:
        return _run_on_ray(settings)
    _check_not_ray_only(settings)
    listener = bind_port(settings.host, settings.port)  # before loading: a taken port fails first
    if settings.grpc_port:  # the gRPC server binds in the app's lifespan; a taken port fails here first
        try:
            bind_port(settings.host, settings.grpc_port, "--grpc-port").close()
        except UsageError:
            listener.close()
            raise
    try:
        app = create_app(settings, serve_grpc=True)
    except ServiceError as err:
        listener.close()
        raise UsageError(err.message) from err
    plane = app.state.dataplane
    if not plane.all_models():
        _no_models(settings, listener)
    for item in plane.all_models():
        state = f"providers {item.model.providers}" if item.model else f"NOT READY: {item.reason}"
        print(f"lc2d serve: {item.name} version {item.version} from {item.path}: {state}", flush=True)
    host, port = listener.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    grpc = f", gRPC on {shown}:{settings.grpc_port}" if settings.grpc_port else ", gRPC off"
    scheme = "https" if settings.ssl_certfile else "http"
    print(f"lc2d serve: {scheme}://{shown}:{port} (docs at /docs{grpc}, default model "
          f"{plane.default_model!r}, pid {os.getpid()})", flush=True)
    limits = ConnectionLimits(settings.header_timeout_s, settings.body_timeout_s, settings.max_connections)
    config = uvicorn.Config(app, log_level=settings.log_level, http=guarded_protocol(limits),
                            timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]
                            timeout_graceful_shutdown=settings.drain_timeout_s,
                            ssl_certfile=settings.ssl_certfile, ssl_keyfile=settings.ssl_keyfile)
    uvicorn.Server(config).run(sockets=[listener])
    return 0


def bind_port(host: str, port: int, option: str = "--port") -> socket.socket:
    """The listening socket of the server, or one line saying why it cannot be had.

    Bound here rather than by uvicorn so that a taken port is reported before anything else is
    printed, and so that ``--port 0`` prints the port the system picked.

    Args:
        host: the interface.
        port: the port.
        option: the option that chose the port, for the message (``--grpc-port``).

    Raises:
        UsageError: the port is in use, or the host is not an address of this machine.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise UsageError(f"{option} {port}: expected a free port on {host}, received one already in use "
                             f"(another server?); choose another with {option}") from err
        raise UsageError(f"--host {host} {option} {port}: cannot listen there: "
                         f"{err.strerror or err}") from err
    listener.set_inheritable(True)
    return listener


def _no_models(settings: ServeSettings, listener: socket.socket) -> None:
    """An empty repository: refused when no model could ever arrive, else one warning line."""
    where = f"{settings.model_repository}/<name>/<version>/model.onnx"
    if settings.model_control_mode == "none":
        listener.close()
        raise UsageError(f"--model-repository: expected at least one model as {where}, received none "
                         "(export one with lc2d export, or start empty with --model-control-mode "
                         "poll or explicit)")
    print(f"lc2d serve: warning: no model yet in {where}; /v2/health/ready answers 503 until one is "
          f"loaded (--model-control-mode {settings.model_control_mode})", file=sys.stderr, flush=True)


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
