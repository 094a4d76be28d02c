"""The gRPC server of ``lc2d serve``: grpc.aio in the same process and event loop as uvicorn.

Started and stopped by the app's lifespan (``create_app(..., serve_grpc=True)``), it shares the
data plane, and so the models, batchers, metrics and drain, with the HTTP routes. The largest
message it receives is the HTTP body limit (``max_body_bytes``); larger ones get
RESOURCE_EXHAUSTED from gRPC itself.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health_pb2_grpc

from service.dataplane import DataPlane
from service.errors import ServiceError
from service.grpc import inference_pb2_grpc as pb_grpc
from service.grpc.health import ReadinessHealth
from service.grpc.servicer import InferenceServicer

logger = logging.getLogger("lc2d.service")


class GrpcBindError(ServiceError):
    """The gRPC port could not be bound (in use, or no permission)."""

    status_code = 503
    code = "grpc_bind_failed"
    exit_code = 2


class GrpcServer:
    """``inference.GRPCInferenceService`` and ``grpc.health.v1.Health`` on ``host:port``.

    Args:
        plane: the data plane the RPCs run against.
        host: interface to listen on (the HTTP server's).
        port: TCP port, > 0.
    """

    def __init__(self, plane: DataPlane, host: str, port: int) -> None:
        self.plane = plane
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Binds and starts serving (needs the running event loop).

        Raises:
            GrpcBindError: the address cannot be bound.
        """
        options = [("grpc.max_receive_message_length", self.plane.settings.max_body_bytes),
                   ("grpc.max_send_message_length", -1),
                   ("grpc.so_reuseport", 0)]  # a port in use is an error, not a silent share
        server = grpc.aio.server(options=options)
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.plane), server)
        health_pb2_grpc.add_HealthServicer_to_server(ReadinessHealth(self.plane), server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as err:
            bound, reason = 0, str(err)
        else:
            reason = "no port bound"
        if bound == 0:
            raise GrpcBindError(f"cannot listen for gRPC on {self.address}: {reason}; choose another "
                                f"--grpc-port (0 disables gRPC)", received=self.address)
        await server.start()
        self._server = server
        logger.info("gRPC listening on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        """Refuses new calls at once and lets calls in flight finish for up to ``grace_s`` seconds."""
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
