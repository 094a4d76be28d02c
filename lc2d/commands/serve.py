"""``lc2d serve``: serve ONNX models over HTTP with ONNX Runtime and dynamic batching."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from lc2d.errors import UsageError

HELP = ("Serve exported .onnx models over HTTP (TensorFlow Serving REST, Open Inference Protocol) "
        "and gRPC (Open Inference Protocol).")

# CLI option -> settings field; every one is also the environment variable LC2D_<FIELD>.
_OPTIONS = ("model", "model_repository", "default_model", "host", "port", "grpc_port", "device",
            "max_batch_size", "max_delay_ms", "max_queue", "threads", "request_timeout_ms", "max_body_bytes",
            "log_level")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of ``lc2d serve``; unset options fall back to ``LC2D_*`` variables."""
    add = parser.add_argument
    add("--model", action="append", type=Path, metavar="PATH.onnx",
        help="an .onnx file to serve under its stem name (repeatable; env LC2D_MODEL, comma-separated)")
    add("--model-repository", type=Path, metavar="DIR",
        help="serve every DIR/<name>/<version>/model.onnx, highest version by default")
    add("--default-model", metavar="NAME", help="the model POST /predict uses")
    add("--host", help="interface to listen on (default 127.0.0.1)")
    add("--port", type=int, help="TCP port (default 8000)")
    add("--grpc-port", type=int, metavar="PORT",
        help="gRPC port (Open Inference Protocol and grpc.health.v1; default 8001, 0 disables)")
    add("--device", choices=("auto", "cpu", "cuda"), help="execution provider choice (default auto)")
    add("--max-batch-size", type=int, metavar="N", help="most instances per run and per request (default 64)")
    add("--max-delay-ms", type=float, metavar="T", help="longest wait for a batch to fill (default 0)")
    add("--max-queue", type=int, metavar="N", help="waiting requests per model before 503 (default 1024)")
    add("--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads (default: ONNX Runtime's)")
    add("--no-spin", dest="spin", action="store_false", default=None,
        help="ONNX Runtime's threads never spin (by default they spin while a batch runs and "
             "stop when it ends); a little slower per run (env LC2D_SPIN=false)")
    add("--request-timeout-ms", type=float, metavar="T", help="deadline of one request; 504 past it")
    add("--max-body-bytes", type=int, metavar="N", help="largest request body; 413 beyond it")
    add("--allow-non-finite", action="store_true", default=None, help="accept NaN and Inf inputs")
    add("--log-level", choices=("critical", "error", "warning", "info", "debug"))


def run(args: argparse.Namespace) -> int:
    """Loads the models (failing with one line if one cannot be served), then runs uvicorn."""
    import pydantic
    import uvicorn

    from service.app import create_app
    from service.errors import ServiceError
    from service.settings import ServeSettings

    overrides = {name: getattr(args, name) for name in (*_OPTIONS, "allow_non_finite", "spin")
                 if getattr(args, name, None) is not None}
    try:
        settings = ServeSettings(**overrides)
    except pydantic.ValidationError as err:
        raise UsageError(_settings_message(err)) from err
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings, serve_grpc=True)
    except ServiceError as err:
        raise UsageError(err.message) from err
    plane = app.state.dataplane
    for item in plane.all_models():
        state = f"providers {item.model.providers}" if item.model else f"NOT READY: {item.error}"
        print(f"lc2d serve: {item.name} version {item.version} from {item.source.path}: {state}", flush=True)
    grpc = f", gRPC on {settings.host}:{settings.grpc_port}" if settings.grpc_port else ", gRPC off"
    print(f"lc2d serve: http://{settings.host}:{settings.port} (docs at /docs{grpc}, default model "
          f"{plane.default_model!r}, pid {os.getpid()})", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=max(1, int(settings.request_timeout_ms // 1000)))
    return 0


def _settings_message(err: object) -> str:
    errors = err.errors()  # type: ignore[attr-defined]
    parts = []
    for item in errors:
        where = ".".join(str(p) for p in item.get("loc", ())) or "settings"
        parts.append(f"{where}: {item.get('msg')} (received {item.get('input')!r})")
    return "; ".join(parts)
