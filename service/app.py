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

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lc2d import __version__
from service.api.bodies import responsive_interpreter_lock
from service.api.fastpath import FastPathDispatch
from service.api.routes import ROUTES
from service.api.routing import build_router, install_error_handlers
from service.dataplane import DataPlane
from service.grpc.server import GrpcServer
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.repository import ModelCatalog
from service.security import add_security
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service")


def create_registry(settings: ServeSettings, metrics: ServiceMetrics) -> ModelRegistry:
    """The model registry of the settings' ``--model`` files and repository (nothing loaded yet)."""
    catalog = ModelCatalog(files=tuple(settings.model), repository=settings.model_repository)
    return ModelRegistry(catalog, settings, metrics, mode=settings.model_control_mode,
                         poll_secs=settings.repository_poll_secs)


def create_app(settings: ServeSettings, *, load_models: bool = True, serve_grpc: bool = False) -> FastAPI:
    """Builds the service.

    Args:
        settings: server settings.
        load_models: load and warm up the models now; False builds the app without any (to
            read its routes and OpenAPI schema).
        serve_grpc: also serve gRPC on ``settings.grpc_port`` (unless 0) from the lifespan, in
            the same event loop; ``lc2d serve`` asks for it, in-process test apps do not.

    Returns:
        The FastAPI app; its lifespan makes the models ready, starts the gRPC server (and polls
        the repository in poll mode, rescans it on SIGHUP) and, on shutdown, drains them: gRPC
        refuses new calls while the calls in flight and the queued requests finish.

    Raises:
        ModelLoadError, ProviderUnavailableError: a ``--model`` file failed to load.
    """
    metrics = ServiceMetrics()
    registry = create_registry(settings, metrics)
    if load_models:
        registry.load_all()
    plane = DataPlane(registry, settings, metrics)

    grpc_server = GrpcServer(plane, settings.host, settings.grpc_port) \
        if serve_grpc and settings.grpc_port else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await plane.start()
        if grpc_server is not None:
            await grpc_server.start()
        with _rescan_on_sighup(registry), responsive_interpreter_lock():
            yield
        if grpc_server is None:
            await plane.stop()
            return
        # both at once: calls in flight wait on the batchers that plane.stop() finishes
        await asyncio.gather(grpc_server.stop(settings.drain_timeout_s), plane.stop())

    app = FastAPI(title="lc2d-serve", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.docs else None,
                  description="LocallyConnected2D models exported to ONNX, served by ONNX Runtime "
                              "with dynamic batching. Speaks TensorFlow Serving's REST predict "
                              "format and the Open Inference Protocol (KServe v2).")
    app.state.dataplane = plane
    app.state.metrics = metrics
    app.include_router(build_router(ROUTES, plane))
    install_error_handlers(app)
    app.add_middleware(FastPathDispatch, plane=plane, routes=ROUTES)  # innermost: skips the router
    if settings.gzip_min_bytes:  # large answers (JSON of big outputs) for clients that accept gzip
        app.add_middleware(GZipMiddleware, minimum_size=settings.gzip_min_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_security(app, settings)  # outermost: a refused request costs nothing else
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
