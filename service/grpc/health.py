"""``grpc.health.v1.Health`` for Kubernetes gRPC probes, answered from the data plane's readiness.

Service ``""`` (what a probe asks by default) and ``inference.GRPCInferenceService`` are
SERVING while the server is ready (a model can run, not draining); a model's name is SERVING
while that model is ready; any other name is NOT_FOUND, as the health protocol asks. Each
answer is computed when asked, so it never lags behind a model becoming unready.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.dataplane import DataPlane
from service.errors import ModelNotFoundError
from service.grpc.status import short_message

INFERENCE_SERVICE = "inference.GRPCInferenceService"
WATCH_INTERVAL_S = 0.5
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class ReadinessHealth(health_pb2_grpc.HealthServicer):
    """The health service of one data plane."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    def status(self, service: str) -> Any:
        """SERVING or NOT_SERVING for a known service name, SERVICE_UNKNOWN otherwise."""
        if service in ("", INFERENCE_SERVICE):
            return _SERVING if self.plane.ready else _NOT_SERVING
        try:
            ready = self.plane.find(service).ready
        except ModelNotFoundError:
            return _UNKNOWN
        return _SERVING if ready else _NOT_SERVING

    async def Check(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> health_pb2.HealthCheckResponse:
        status = self.status(request.service)
        if status == _UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND, short_message(
                f"unknown service {request.service!r}; expected '', {INFERENCE_SERVICE!r} or a model name"))
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest,
                    context: grpc.aio.ServicerContext) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """Sends the status now and again whenever it changes (checked every 0.5 s)."""
        last = None
        while True:
            status = self.status(request.service)
            if status != last:
                yield health_pb2.HealthCheckResponse(status=status)
                last = status
            await asyncio.sleep(WATCH_INTERVAL_S)
