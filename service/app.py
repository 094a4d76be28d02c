"""The FastAPI application: wiring of settings, data plane, routes, errors and metrics.

Example:
    >>> settings = ServeSettings(model=[Path("model.onnx")])
    >>> app = create_app(settings)            # loads the models; raises ModelLoadError
    >>> uvicorn.run(app, host=settings.host, port=settings.port)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import tfserving, v2
from service.api.bodies import error_response, json_response
from service.api.fastpath import InferenceDispatch
from service.dataplane import SERVER_VERSION, DataPlane
from service.errors import ServiceError
from service.metrics import CONTENT_TYPE, ServiceMetrics
from service.registry import ModelRegistry
from service.repository import ModelCatalog
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service")


def create_registry(settings: ServeSettings, metrics: ServiceMetrics) -> ModelRegistry:
    """The model registry of the settings' ``--model`` files and repository (nothing loaded yet)."""
    catalog = ModelCatalog(files=tuple(settings.model), repository=settings.model_repository)
    return ModelRegistry(catalog, settings, metrics, mode=settings.model_control_mode,
                         poll_secs=settings.repository_poll_secs)


def create_app(settings: ServeSettings, *, load_models: bool = True) -> FastAPI:
    """Builds the service.

    Args:
        settings: server settings.
        load_models: load and warm up the models now; False builds the app without any (to
            read its routes and OpenAPI schema).

    Returns:
        The FastAPI app; its lifespan makes the models ready (and polls the repository in poll
        mode, rescans it on SIGHUP) and, on shutdown, drains them.

    Raises:
        ModelLoadError, ProviderUnavailableError: a ``--model`` file failed to load.
    """
    metrics = ServiceMetrics()
    registry = create_registry(settings, metrics)
    if load_models:
        registry.load_all()
    plane = DataPlane(registry, settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        with _rescan_on_sighup(registry):
            yield
        await plane.stop()

    app = FastAPI(title="lc2d-serve", version=SERVER_VERSION, lifespan=lifespan,
                  description="LocallyConnected2D models exported to ONNX, served by ONNX Runtime "
                              "with dynamic batching. Speaks TensorFlow Serving's REST predict "
                              "format and the Open Inference Protocol (KServe v2).")
    app.state.dataplane = plane
    app.state.metrics = metrics
    examples = _openapi_examples(plane)
    app.include_router(tfserving.create_router(examples["predict"]))
    app.include_router(v2.create_router(examples["infer"]))
    _add_operations_routes(app, metrics)
    _add_error_handlers(app)
    app.add_middleware(InferenceDispatch, plane=plane)  # innermost: inference skips the router
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


@contextmanager
def _rescan_on_sighup(registry: ModelRegistry) -> Iterator[None]:
    """SIGHUP rereads the repository at once; only where the loop may own signals (main thread)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, registry.request_rescan)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):  # not the main thread; no SIGHUP
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def _add_operations_routes(app: FastAPI, metrics: ServiceMetrics) -> None:
    @app.get("/metrics", tags=["operations"])
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: requests, errors, latency, batch sizes, queue depth, inferences."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> Response:
        """Liveness for load balancers (same as /v2/health/live)."""
        return json_response({"live": True})


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, err: ServiceError) -> Response:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> Response:
        return json_response({"error": f"invalid request: {err.errors()}", "code": "invalid_request"},
                             status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> Response:
        return json_response({"error": str(err.detail), "code": "http_error"}, status_code=err.status_code,
                             headers=dict(err.headers or {}))


class MetricsMiddleware:
    """Counts every answer by route template, method and status, and times it (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.request_done(template, scope.get("method", ""), status,
                                      time.perf_counter() - started)


def _openapi_examples(plane: DataPlane) -> dict[str, dict[str, Any]]:
    """Request examples for /docs, shaped like the default model's input."""
    shape: list[int] = [2, 2]
    name = "input"
    if plane.default_model is not None:
        item = plane.find(plane.default_model)
        if item.model is not None:
            shape = [d or 1 for d in item.model.contract.instance_shape]
            name = item.model.contract.input_name
    instance = np.round(np.random.default_rng(0).random(shape), 3).tolist()
    predict_schema = {"type": "object", "properties": {
        "instances": {"type": "array", "description": "instances shaped like one model input"},
        "inputs": {"description": "a whole batch, batch axis first (columnar format)"}}}
    infer_body = {"inputs": [{"name": name, "shape": [1, *shape], "datatype": "FP32",
                              "data": np.ravel(instance).tolist()}]}
    return {
        "predict": {"requestBody": {"required": True, "content": {
            "application/json": {"schema": predict_schema, "examples": {
                "one instance": {"value": {"instances": [instance]}}}},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}}},
        "infer": {"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}, "examples": {
                "JSON tensor": {"value": infer_body}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    }
