"""The FastAPI application: wiring of settings, data plane, routes, errors and metrics.

Example:
    >>> settings = ServeSettings(model=[Path("model.onnx")])
    >>> app = create_app(settings)            # loads the models; raises ModelLoadError
    >>> uvicorn.run(app, host=settings.host, port=settings.port)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api import tfserving, v2
from service.api.bodies import error_response, json_response
from service.api.fastpath import InferenceDispatch
from service.dataplane import SERVER_VERSION, DataPlane, ServedModel, load_served_models
from service.errors import ServiceError
from service.grpc.server import GrpcServer
from service.metrics import CONTENT_TYPE, ServiceMetrics
from service.repository import ModelSource, discover_repository, sources_from_files
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service")


def model_sources(settings: ServeSettings) -> list[ModelSource]:
    """Every model version the settings name: ``--model`` files first, then the repository."""
    sources = sources_from_files(list(settings.model))
    if settings.model_repository is not None:
        sources += discover_repository(settings.model_repository)
    return sources


def create_app(settings: ServeSettings, served: Sequence[ServedModel] | None = None, *,
               serve_grpc: bool = False) -> FastAPI:
    """Builds the service.

    Args:
        settings: server settings.
        served: already loaded models; loaded from ``settings`` when omitted.
        serve_grpc: also serve gRPC on ``settings.grpc_port`` (unless 0) from the lifespan, in
            the same event loop; ``lc2d serve`` asks for it, in-process test apps do not.

    Returns:
        The FastAPI app; its lifespan starts the batchers (and the gRPC server) and, on
        shutdown, drains them: gRPC refuses new calls while the calls in flight and the queued
        requests finish.

    Raises:
        ModelLoadError, ProviderUnavailableError: a ``--model`` file failed to load.
    """
    if served is None:
        served = load_served_models(model_sources(settings), settings)
    metrics = ServiceMetrics()
    plane = DataPlane(served, settings, metrics)

    grpc_server = GrpcServer(plane, settings.host, settings.grpc_port) \
        if serve_grpc and settings.grpc_port else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        if grpc_server is not None:
            await grpc_server.start()
        yield
        if grpc_server is None:
            await plane.stop()
            return
        # both at once: calls in flight wait on the batchers that plane.stop() finishes
        await asyncio.gather(grpc_server.stop(settings.request_timeout_ms / 1000.0), plane.stop())

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
