"""Request bytes that are no valid protobuf message are the client's fault: INVALID_ARGUMENT.

The generated ``add_*Servicer_to_server`` functions decode requests with ``FromString``; when a
client sends bytes that do not decode, the exception is raised inside grpc, whose answer is
UNKNOWN ("Unexpected DecodeError"), a status that reads as a server fault. :func:`add_service`
registers a servicer the same way, from its service descriptor, with a decoder that turns a
``DecodeError`` into INVALID_ARGUMENT naming the message type the method expects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import DecodeError


class UndecodableRequest:
    """Stands in for a request whose bytes did not decode; the handler refuses it."""

    def __init__(self, message: str) -> None:
        self.message = message


def add_service(servicer: Any, service: ServiceDescriptor, server: grpc.aio.Server) -> None:
    """Serves every method of ``service`` with ``servicer``'s method of the same name."""
    handlers = {method.name: _handler(getattr(servicer, method.name), method) for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


def _handler(behaviour: Callable[..., Any], method: MethodDescriptor) -> grpc.RpcMethodHandler:
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    expected = method.input_type.full_name

    def decode(data: bytes) -> Any:
        try:
            return request_type.FromString(data)
        except DecodeError as err:
            return UndecodableRequest(f"the request is not a valid {expected} protobuf message: {err}")

    if method.server_streaming:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, UndecodableRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            async for answer in behaviour(request, context):
                yield answer

        return grpc.unary_stream_rpc_method_handler(stream, request_deserializer=decode,
                                                    response_serializer=response_type.SerializeToString)

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, UndecodableRequest):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        return await behaviour(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=decode,
                                               response_serializer=response_type.SerializeToString)
