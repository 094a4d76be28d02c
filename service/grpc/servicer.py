"""``inference.GRPCInferenceService``: the Open Inference Protocol's RPCs on the shared data plane.

Every RPC resolves the model through :class:`~service.dataplane.DataPlane`, validates with the
model's contract and runs through its dynamic batcher, exactly as the HTTP routes do; the
client's gRPC deadline is the request's deadline. A :class:`~service.errors.ServiceError`
becomes a gRPC status through :mod:`service.grpc.status` (one table), with the same message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from service.api.repository import load_override
from service.api.v2 import check_input_names, check_output_names
from service.classification import class_count, top_classes
from service.contract import InputContract
from service.dataplane import DataPlane
from service.errors import MalformedRequestError, ServiceError
from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from service.grpc.status import grpc_code, status_message, trailing_metadata
from service.grpc.tensors import add_output, parameter_value, request_arrays
from service.registry import ModelVersion

logger = logging.getLogger("lc2d.service")
Request = TypeVar("Request")
Response = TypeVar("Response")
Handler = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]
_DATATYPES = {"FP32": pb.TYPE_FP32, "FP64": pb.TYPE_FP64, "FP16": pb.TYPE_FP16, "INT64": pb.TYPE_INT64,
              "INT32": pb.TYPE_INT32, "UINT8": pb.TYPE_UINT8}
_FORMATS = {"channels_last": pb.ModelInput.FORMAT_NHWC, "channels_first": pb.ModelInput.FORMAT_NCHW}


def rpc(method: Handler[Request, Response]) -> Handler[Request, Response]:
    """Turns service errors into gRPC statuses and records every call in the metrics."""

    @functools.wraps(method)
    async def handle(self: InferenceServicer, request: Request,
                     context: grpc.aio.ServicerContext) -> Response:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await method(self, request, context)
        except ServiceError as err:
            code = grpc_code(err)
            await _abort(context, code, status_message(err), trailing_metadata(err))
            raise  # not reached: abort raises
        except grpc.aio.AbortError:
            raise
        except asyncio.CancelledError:  # the client went away or its deadline passed
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as err:  # a bug: logged, and the client gets INTERNAL rather than UNKNOWN
            code = grpc.StatusCode.INTERNAL
            logger.exception("gRPC %s failed", method.__name__)
            await _abort(context, code, f"internal error in {method.__name__}: {type(err).__name__}")
            raise
        finally:
            self.plane.metrics.grpc_done(method.__name__, code.name, time.perf_counter() - started)

    return handle


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
    """Ends the call with ``code``; when the call has already ended (its deadline passed while the
    error was raised), there is nobody to tell: the call is cancelled, which grpc logs at debug
    level, instead of a failed send that grpc logs as a 25-line traceback."""
    try:
        await context.abort(code, message, trailing_metadata=metadata)
    except grpc.aio.AbortError:
        raise
    except Exception as err:  # grpc's ExecuteBatchError: the status could not be sent
        raise asyncio.CancelledError(f"the call ended before its status {code.name} was sent") from err


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The gRPC front door of one :class:`DataPlane`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    @rpc
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    @rpc
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    @rpc
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.find(request.name, request.version or None).ready)

    @rpc
    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    @rpc
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        metadata = self.plane.model_metadata(request.name, request.version or None)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"],
            inputs=[tensor(**t) for t in metadata["inputs"]],
            outputs=[tensor(**t) for t in metadata["outputs"]])

    @rpc
    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: grpc.aio.ServicerContext) -> pb.ModelInferResponse:
        async with self.plane.serving(request.model_name, request.model_version or None) as item:
            contract = item.contract
            check_input_names([tensor.name for tensor in request.inputs], contract)
            batch = contract.validate_batch(request_arrays(request)[0], item.limits)
            wanted = _requested_outputs(request, contract)
            outputs = await self.plane.infer(item, batch, context.time_remaining())
            response = pb.ModelInferResponse(model_name=item.name, model_version=item.version, id=request.id)
            raw = len(request.raw_input_contents) > 0
            for name, k in wanted:
                array = outputs[name] if k is None else top_classes(outputs[name], k, contract.labels, name)
                add_output(response, name, array, raw)
            return response

    @rpc
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        item = self.plane.find_ready(request.name, request.version or None)
        return pb.ModelConfigResponse(config=_model_config(item, self.plane))

    @rpc
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: Any) -> pb.ModelStatisticsResponse:
        stats = self.plane.registry.stats(request.name or None, request.version or None)
        return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

    @rpc
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest,
                              context: Any) -> pb.RepositoryIndexResponse:
        _check_repository(request.repository_name)
        rows = [row for row in self.plane.registry.index() if not request.ready or row.state == "READY"]
        return pb.RepositoryIndexResponse(models=[
            pb.RepositoryIndexResponse.ModelIndex(name=row.name, version=row.version or "", state=row.state,
                                                  reason=row.reason) for row in rows])

    @rpc
    async def RepositoryModelLoad(self, request: pb.RepositoryModelLoadRequest,
                                  context: Any) -> pb.RepositoryModelLoadResponse:
        _check_repository(request.repository_name)
        parameters = {key: parameter_value(value) for key, value in request.parameters.items()}
        await self.plane.registry.load(request.model_name, load_override(parameters))
        return pb.RepositoryModelLoadResponse()

    @rpc
    async def RepositoryModelUnload(self, request: pb.RepositoryModelUnloadRequest,
                                    context: Any) -> pb.RepositoryModelUnloadResponse:
        _check_repository(request.repository_name)
        unknown = sorted(set(request.parameters) - {"unload_dependents"})  # no model has dependents
        if unknown:
            raise MalformedRequestError(f"unknown unload parameters {unknown}, expected none or "
                                        f"['unload_dependents']", expected=["unload_dependents"],
                                        received=unknown)
        await self.plane.registry.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _check_repository(name: str) -> None:
    """The server has one repository: a request naming another is refused, not ignored."""
    if name:
        raise MalformedRequestError(f"this server has one model repository; expected an empty "
                                    f"repository_name, received {name!r}", expected="", received=name)


def _requested_outputs(request: pb.ModelInferRequest,
                       contract: InputContract) -> list[tuple[str, int | None]]:
    """(output name, classification k or None) for each requested output; every output when none."""
    if not request.outputs:
        return [(name, None) for name in contract.output_names]
    check_output_names([output.name for output in request.outputs], contract)
    wanted = []
    for output in request.outputs:
        parameters = {key: parameter_value(value) for key, value in output.parameters.items()}
        wanted.append((output.name, class_count(parameters, output.name)))
    return wanted


def _model_config(item: ModelVersion, plane: DataPlane) -> pb.ModelConfig:
    """The Triton-style configuration of a model version, filled from its contract and config."""
    contract = item.contract
    metadata = plane.model_metadata(item.name, item.version)
    dims = [-1 if d is None else int(d) for d in contract.instance_shape]
    image_format = _FORMATS.get(contract.data_format or "", pb.ModelInput.FORMAT_NONE) if len(dims) == 3 \
        else pb.ModelInput.FORMAT_NONE
    config = pb.ModelConfig(
        name=item.name, platform=metadata["platform"], backend="onnxruntime",
        max_batch_size=item.config.max_batch_size,
        input=[pb.ModelInput(name=contract.input_name, data_type=pb.TYPE_FP32, dims=dims,
                             format=image_format)],
        output=[pb.ModelOutput(name=o["name"], data_type=_DATATYPES.get(o["datatype"], pb.TYPE_INVALID),
                               dims=o["shape"][1:]) for o in metadata["outputs"]],
        dynamic_batching=pb.ModelDynamicBatching(
            max_queue_delay_microseconds=int(item.config.max_delay_ms * 1000)))
    config.parameters["version"].string_value = item.version
    if contract.labels:
        config.parameters["labels"].string_value = ",".join(contract.labels)
    return config
