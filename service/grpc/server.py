"""The gRPC server of ``lc2d serve``: grpc.aio in the same process and event loop as uvicorn.

Started and stopped by the app's lifespan (``create_app(..., serve_grpc=True)``), it shares the
data plane, and so the models, batchers, metrics and drain, with the HTTP routes. The largest
message it receives is the HTTP body limit (``max_body_bytes``); larger ones get
RESOURCE_EXHAUSTED from gRPC itself. With ``--api-keys`` every call but the health service
needs ``authorization: Bearer <key>`` metadata; with ``--ssl-certfile`` it serves TLS with the
same certificate as HTTPS.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from service.dataplane import DataPlane
from service.errors import ServiceError
from service.grpc import inference_pb2 as pb
from service.grpc.decoding import add_service
from service.grpc.health import ReadinessHealth
from service.grpc.servicer import InferenceServicer
from service.security import key_authorized, read_api_keys, refusal_message

HEALTH_PREFIX = "/grpc.health.v1.Health/"

logger = logging.getLogger("lc2d.service")


class GrpcBindError(ServiceError):
    """The gRPC port could not be bound (in use, or no permission)."""

    status_code = 503
    code = "grpc_bind_failed"
    exit_code = 2


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <key>`` metadata (UNAUTHENTICATED), as the
    HTTP app refuses requests (401); ``grpc.health.v1.Health`` stays open, like the HTTP probes."""

    def __init__(self, keys: list[bytes]) -> None:
        self.keys = keys

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        if details.method.startswith(HEALTH_PREFIX):
            return await continuation(details)
        values = [v for k, v in (details.invocation_metadata or ()) if k == "authorization"]
        header = (values[0].encode() if isinstance(values[0], str) else values[0]) if values else None
        if key_authorized(header, self.keys):
            return await continuation(details)
        message = refusal_message(header)

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        return grpc.unary_unary_rpc_method_handler(refuse)


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
        settings = self.plane.settings
        keys = read_api_keys(settings.api_keys) if settings.api_keys is not None else None
        server = grpc.aio.server(options=options,
                                 interceptors=[ApiKeyInterceptor(keys)] if keys is not None else None)
        # as the generated add_*_to_server, but undecodable requests get INVALID_ARGUMENT, not UNKNOWN
        add_service(InferenceServicer(self.plane), pb.DESCRIPTOR.services_by_name["GRPCInferenceService"],
                    server)
        add_service(ReadinessHealth(self.plane), health_pb2.DESCRIPTOR.services_by_name["Health"], server)
        try:
            if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:  # HTTPS's certificate
                credentials = grpc.ssl_server_credentials(
                    [(settings.ssl_keyfile.read_bytes(), settings.ssl_certfile.read_bytes())])
                bound = server.add_secure_port(self.address, credentials)
            else:
                bound = server.add_insecure_port(self.address)
        except (RuntimeError, OSError) as err:
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
