"""Hypothesis-generated odd gRPC requests against the ``inference.GRPCInferenceService`` of ``lc2d serve``.

Every RPC of the service (and the health check) gets requests a buggy client or an attacker would
send: raw contents of the wrong length or count, raw and typed contents together, shapes that are
negative, overflow int64 or have 100 axes, datatypes the model cannot take, values out of their
datatype's range, NaN/Inf, parameters of every kind in every place, outputs that do not exist,
names and versions that are empty, huge, hold NUL or ``..``, and repository loads with odd names
and configurations. Each must get a client-error status (never INTERNAL, UNKNOWN or DATA_LOSS)
whose message names no server path; a ModelInfer the server accepts must be answered as a direct
ONNX Runtime run computes its input; and the same channel must then answer a valid ModelInfer as
the NumPy reference computes it (see ``conftest.GrpcFuzzClient``).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import pytest
from grpc_health.v1 import health_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from service.api.v2 import NUMERIC_DATATYPES
from service.grpc import inference_pb2 as pb
from tests.fuzz.conftest import (
    EXAMPLES,
    FUZZ_SETTINGS,
    INSTANCE_SHAPE,
    TOLERANCE,
    GrpcFuzzClient,
    WrittenModel,
    stop_with_a_clean_log,
)
from tests.fuzz.strategies import json_values, mutated, odd_names, odd_versions
from tests.service.conftest import ServerProcess, write_classifier

DATATYPES = ["FP32", "FP64", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
             "UINT64", "BOOL", "BYTES", "fp32", "", "FP32 ", "X" * 300]
CONTENT_FIELDS = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                  "fp32_contents", "fp64_contents", "bytes_contents"]
INT64, UINT64 = (-(2**63), 2**63 - 1), (0, 2**64 - 1)
FIELD_VALUES = {
    "bool_contents": st.booleans(),
    "int_contents": st.integers(-(2**31), 2**31 - 1),
    "int64_contents": st.integers(*INT64),
    "uint_contents": st.integers(0, 2**32 - 1),
    "uint64_contents": st.integers(*UINT64),
    "fp32_contents": st.floats(width=32),
    "fp64_contents": st.floats(),
    "bytes_contents": st.binary(max_size=8),
}
VALID_SHAPE = [2, *INSTANCE_SHAPE]
HOSTILE_SHAPES = [[2**62, *INSTANCE_SHAPE], [2**32, 2**32, 1, 1], [0, 2**62, 4, 1],
                  [0, 2**63 - 1, 2**63 - 1, 1], [2**61, 2**3, 1, 1], [-1, *INSTANCE_SHAPE], [2, -4, 4, 1], [],
                  [1] * 33, [1] * 100, [16], [2, 16], [1, 4, 4, 1, 1]]
"""Shapes whose product wraps to 0 in int64, that NumPy cannot build, negative, empty or of rank 100."""
dims = st.one_of(st.integers(0, 10), st.integers(-3, -1), st.integers(*INT64), st.sampled_from(
    [2**62, 2**63 - 1, 2**32, 2**31, 4, 1]))
shapes = st.one_of(st.just(VALID_SHAPE), st.sampled_from(HOSTILE_SHAPES), st.lists(dims, max_size=6))


@st.composite
def infer_parameters(draw: st.DrawFn) -> pb.InferParameter:
    """An ``InferParameter`` of any kind (or none set), with edge values."""
    parameter = pb.InferParameter()
    kind = draw(st.sampled_from(["bool_param", "int64_param", "string_param", "double_param", "uint64_param",
                                 None]))
    values = {"bool_param": st.booleans(), "int64_param": st.integers(*INT64),
              "string_param": st.one_of(st.text(max_size=8), st.sampled_from(["3", "-1", "true", "{}"])),
              "double_param": st.floats(), "uint64_param": st.integers(*UINT64)}
    if kind is not None:
        setattr(parameter, kind, draw(values[kind]))
    return parameter


PARAMETER_NAMES = ["classification", "binary_data", "binary_data_size", "binary_data_output", "sequence_id",
                   "priority", "timeout", "shared_memory_region"]
parameter_maps = st.dictionaries(st.one_of(st.sampled_from(PARAMETER_NAMES), st.text(max_size=6)),
                                 infer_parameters(), max_size=3)


def fill_parameters(target: object, parameters: dict[str, pb.InferParameter]) -> None:
    for key, value in parameters.items():
        target.parameters[key].CopyFrom(value)  # type: ignore[attr-defined]


@st.composite
def input_tensors(draw: st.DrawFn, request: pb.ModelInferRequest) -> None:
    """Adds one input: any name, datatype and shape; typed contents in any field, maybe none."""
    tensor = request.inputs.add(name=draw(st.one_of(st.just("input"), st.just("input"), odd_names)),
                                datatype=draw(st.one_of(st.just("FP32"), st.sampled_from(DATATYPES))),
                                shape=draw(shapes))
    field = draw(st.one_of(st.none(), st.just("fp32_contents"), st.sampled_from(CONTENT_FIELDS)))
    if field is not None:
        count = math.prod(tensor.shape) if all(0 <= d <= 64 for d in tensor.shape) else 1
        size = draw(st.sampled_from([count, count, 0, count + 1, max(count - 1, 0)]))
        values = draw(st.lists(FIELD_VALUES[field], min_size=min(size, 200), max_size=min(size, 200)))
        getattr(tensor.contents, field).extend(values)
    fill_parameters(tensor, draw(parameter_maps))


@st.composite
def raw_contents(draw: st.DrawFn, request: pb.ModelInferRequest) -> None:
    """Raw bytes for the inputs: the right length or not, one per input or not."""
    for tensor in request.inputs:
        count = math.prod(tensor.shape) if all(0 <= d <= 64 for d in tensor.shape) else 0
        itemsize = draw(st.sampled_from([4, 4, 2, 8, 1]))
        length = draw(st.sampled_from([count * itemsize] * 3 + [0, 1, count * itemsize + 1, 200_500]))
        if length == count * 4 and count and draw(st.booleans()):
            values = draw(st.lists(st.floats(width=32), min_size=count, max_size=count))
            request.raw_input_contents.append(struct.pack(f"<{count}f", *values))
        else:
            request.raw_input_contents.append(bytes(length))
    extra = draw(st.sampled_from([0, 0, 0, 1, -1]))
    if extra > 0:
        request.raw_input_contents.append(draw(st.binary(max_size=64)))
    elif extra < 0 and request.raw_input_contents:
        del request.raw_input_contents[-1]


@st.composite
def nearly_valid_infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """One FP32 input of the model's shape, raw or typed (0-10 instances, maybe NaN/Inf), and odd
    parameters and requested outputs: the checks after the input's are reached too."""
    count = draw(st.integers(0, 10))  # the server's --max-batch-size is 8
    size = count * math.prod(INSTANCE_SHAPE)
    values = np.asarray(draw(st.lists(st.floats(-10, 10, width=32), min_size=size, max_size=size)),
                        np.float32)
    if count and draw(st.booleans()):
        values[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 3e38]))
    request = pb.ModelInferRequest(model_name="tiny", model_version=draw(st.sampled_from(["", "1"])))
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[count, *INSTANCE_SHAPE])
    if draw(st.booleans()):
        request.raw_input_contents.append(values.tobytes())
    else:
        tensor.contents.fp32_contents.extend(values.tolist())
    return request


TYPED_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT8": "int_contents",
               "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
               "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
               "UINT64": "uint64_contents", "BOOL": "bool_contents", "BYTES": "bytes_contents",
               "FP16": "fp32_contents"}
"""Where the protocol puts each datatype's typed values (FP16 has none: fp32 is a client's guess)."""


@st.composite
def hostile_inputs(draw: st.DrawFn) -> pb.ModelInferRequest:
    """The model's one input, named right, with a hostile datatype, shape or contents: raw bytes sized
    for the shape's product as int64 arithmetic wraps it (0 for [2**62, 4, 4, 1]), typed values the
    datatype cannot hold (INT8 contents of 1000), or raw and typed contents together."""
    datatype = draw(st.sampled_from(["FP32", "FP32", *sorted(TYPED_FIELD)]))
    shape = draw(st.one_of(st.just(VALID_SHAPE), st.sampled_from(HOSTILE_SHAPES)))
    request = pb.ModelInferRequest(model_name="tiny")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=shape)
    wrapped = int(np.prod(np.asarray(shape, np.int64))) if all(d >= 0 for d in shape) else 0
    count = wrapped if 0 <= wrapped <= 64 else 0
    form = draw(st.sampled_from(["raw", "typed", "both"]))
    if form != "typed":
        itemsize = NUMERIC_DATATYPES[datatype].itemsize if datatype in NUMERIC_DATATYPES else 4
        size = count * itemsize
        request.raw_input_contents.append(draw(st.binary(min_size=size, max_size=size)))
    if form != "raw":
        field = TYPED_FIELD[datatype]
        getattr(tensor.contents, field).extend(draw(st.lists(FIELD_VALUES[field], min_size=count,
                                                             max_size=count)))
    return request


@st.composite
def infer_requests(draw: st.DrawFn) -> pb.ModelInferRequest:
    """Any ``ModelInferRequest``: nearly valid, with a hostile input, or built from odd parts."""
    kind = draw(st.sampled_from(["nearly valid", "hostile input", "odd parts"]))
    if kind == "nearly valid":
        request = draw(nearly_valid_infer_requests())
    elif kind == "hostile input":
        request = draw(hostile_inputs())
    else:
        name = draw(st.one_of(st.just("tiny"), st.just("tiny"), odd_names))
        version = draw(st.one_of(st.just(""), odd_versions))
        request = pb.ModelInferRequest(model_name=name, model_version=version)
        for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2, 3]))):
            draw(input_tensors(request))
        if draw(st.booleans()):
            draw(raw_contents(request))
    request.id = draw(st.one_of(st.just(""), st.text(max_size=8), st.just("i" * 5000)))
    fill_parameters(request, draw(parameter_maps))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        output = request.outputs.add(name=draw(st.one_of(st.just("probabilities"), odd_names)))
        fill_parameters(output, draw(parameter_maps))
    return request


@pytest.fixture(scope="module")
def direct_session(fuzz_model: WrittenModel) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(fuzz_model.path), providers=["CPUExecutionProvider"])


def check_answer(request: pb.ModelInferRequest, answer: pb.ModelInferResponse,
                 session: onnxruntime.InferenceSession) -> None:
    """An accepted request is answered as ONNX Runtime computes its input, read as the protocol
    says: raw bytes of the datatype, or the typed values as the numbers they are (never wrapped)."""
    (tensor,) = request.inputs
    if request.raw_input_contents:
        values = np.frombuffer(request.raw_input_contents[0], NUMERIC_DATATYPES[tensor.datatype])
    else:
        ((_, typed),) = tensor.contents.ListFields()
        values = np.asarray(list(typed), dtype=np.float64)
    batch = values.astype(np.float32).reshape(list(tensor.shape))
    (scores,) = session.run(None, {"input": batch})
    asked = list(request.outputs)
    for index, output in enumerate(answer.outputs):
        if output.datatype == "FP32":
            got = (np.frombuffer(answer.raw_output_contents[index], "<f4") if answer.raw_output_contents
                   else np.asarray(output.contents.fp32_contents, np.float32))
            np.testing.assert_allclose(got.reshape(list(output.shape)), scores, **TOLERANCE, equal_nan=True)
            continue
        classification = asked[index].parameters["classification"]
        assert output.datatype == "BYTES", output
        k = classification.int64_param or classification.uint64_param
        assert list(output.shape) == [len(batch), min(k, scores.shape[1])]
        entries = (output.contents.bytes_contents if not answer.raw_output_contents
                   else split_bytes_tensor(answer.raw_output_contents[index]))
        rows = np.asarray([e.decode().split(":")[:2] for e in entries], float).reshape(len(batch), -1, 2)
        for row, (entry_scores, entry_classes) in enumerate(zip(rows[..., 0], rows[..., 1], strict=True)):
            np.testing.assert_allclose(entry_scores, scores[row, entry_classes.astype(int)], **TOLERANCE)
            assert (np.diff(entry_scores) <= 0).all()  # highest first


def split_bytes_tensor(raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte little-endian length, then its bytes."""
    elements, at = [], 0
    while at < len(raw):
        (length,) = struct.unpack_from("<I", raw, at)
        elements.append(raw[at + 4:at + 4 + length])
        at += 4 + length
    return elements


# ModelInfer has the largest space of the suite and its requests are cheap: 5 x the examples
@settings(FUZZ_SETTINGS, max_examples=5 * EXAMPLES)
@given(request=infer_requests())
def test_model_infer_requests_never_get_a_server_error(grpc_fuzz_client: GrpcFuzzClient,
                                                       direct_session: onnxruntime.InferenceSession,
                                                       request: pb.ModelInferRequest) -> None:
    answer = grpc_fuzz_client.attack("ModelInfer", request)
    if isinstance(answer, pb.ModelInferResponse):
        check_answer(request, answer, direct_session)


def model_requests(message: type) -> st.SearchStrategy:
    return st.builds(message, name=st.one_of(st.just("tiny"), odd_names),
                     version=st.one_of(st.just(""), st.just("1"), odd_versions))


repository_parameters = st.dictionaries(
    st.one_of(st.sampled_from(["config", "unload_dependents", "file:1/model.onnx", "file:../../x"]),
              st.text(max_size=6)),
    st.one_of(st.builds(pb.ModelRepositoryParameter, bool_param=st.booleans()),
              st.builds(pb.ModelRepositoryParameter, int64_param=st.integers(*INT64)),
              st.builds(pb.ModelRepositoryParameter, string_param=st.text(max_size=12)),
              st.builds(pb.ModelRepositoryParameter, bytes_param=st.binary(max_size=12))),
    max_size=2)


def repository_requests(message: type, names: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.builds(message, model_name=names, parameters=repository_parameters,
                     repository_name=st.one_of(st.just(""), st.just(""), odd_names))


read_rpcs = st.one_of(
    st.tuples(st.just("ModelMetadata"), model_requests(pb.ModelMetadataRequest)),
    st.tuples(st.just("ModelReady"), model_requests(pb.ModelReadyRequest)),
    st.tuples(st.just("ModelConfig"), model_requests(pb.ModelConfigRequest)),
    st.tuples(st.just("ModelStatistics"), model_requests(pb.ModelStatisticsRequest)),
    st.tuples(st.just("ServerMetadata"), st.just(pb.ServerMetadataRequest())),
    st.tuples(st.just("ServerReady"), st.just(pb.ServerReadyRequest())),
    st.tuples(st.just("RepositoryIndex"), st.builds(pb.RepositoryIndexRequest, ready=st.booleans(),
                                                    repository_name=st.one_of(st.just(""), odd_names))),
    # model control mode none: refused, whatever the name and parameters
    st.tuples(st.just("RepositoryModelLoad"), repository_requests(pb.RepositoryModelLoadRequest, odd_names)),
    st.tuples(st.just("RepositoryModelUnload"), repository_requests(pb.RepositoryModelUnloadRequest,
                                                                    st.one_of(st.just("tiny"), odd_names))),
    st.tuples(st.just("Health/Check"), st.builds(health_pb2.HealthCheckRequest,
                                                 service=st.one_of(st.just("tiny"), odd_names))),
)


@FUZZ_SETTINGS
@given(call=read_rpcs)
def test_other_rpcs_never_get_a_server_error(grpc_fuzz_client: GrpcFuzzClient,
                                             call: tuple[str, object]) -> None:
    grpc_fuzz_client.attack(*call)


def test_bytes_that_are_no_protobuf_get_invalid_argument(grpc_fuzz_client: GrpcFuzzClient) -> None:
    """Bytes that do not decode as the method's message are the client's fault (grpc's own answer
    was UNKNOWN), on every method of both services."""
    bodies = [b"\xff" * 7, b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05ti", b"\x08" + b"\xff" * 10]
    methods = ["/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelReady",
               "/inference.GRPCInferenceService/RepositoryModelLoad", "/grpc.health.v1.Health/Check"]
    for method in methods:
        call = grpc_fuzz_client.channel.unary_unary(method)  # bytes in, bytes out
        for body in bodies:
            error = grpc_fuzz_client.attack(call, body)
            assert isinstance(error, grpc.RpcError), method
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "is not a valid" in error.details()
    watch = grpc_fuzz_client.channel.unary_stream("/grpc.health.v1.Health/Watch")
    with pytest.raises(grpc.RpcError) as refused:
        next(watch(bodies[0], timeout=10))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the repository RPCs, on a server in explicit model control mode ------------------------------

SPARE = "spare"
"""The model the repository attacks load and unload; ``tiny`` (checked after each attack) is left alone."""
CONFIG_VALUES: dict[str, st.SearchStrategy] = {  # odd values, but none that makes a load slow on purpose
    "max_batch_size": st.one_of(st.integers(-2, 70), st.sampled_from([2**70, 65_537, 1.5, "8", True, None])),
    "instances": st.sampled_from([0, 1, 2, 65, 10**6, "2", True, None, 1.5]),
    "threads": st.sampled_from([0, 1, 257, 2**70, "1", False, None]),
    "max_delay_ms": st.sampled_from([-1, 0, 1, 60_001, 1e308, "5", None]),
    "max_queue": st.one_of(st.integers(-2, 5), st.just(2**70)),
    "request_timeout_ms": st.sampled_from([0, -1, 1e308, 5000, "x"]),
    "version_policy": st.one_of(json_values, st.fixed_dictionaries({"latest": st.integers(-1, 3)}),
                                st.fixed_dictionaries({"specific": st.lists(st.integers(-2, 3), max_size=3)}),
                                st.fixed_dictionaries({"all": json_values})),
    "default_version": st.one_of(st.integers(-2, 3), st.just(2**70), st.text(max_size=3)),
    "warmup": st.one_of(st.lists(st.integers(-1, 70), max_size=20), json_values),
    "device": st.sampled_from(["cpu", "auto", "cuda", "../x", 3]),
    "allow_non_finite": st.one_of(st.booleans(), json_values),
    "labels": json_values,
}


@st.composite
def load_configs(draw: st.DrawFn) -> pb.ModelRepositoryParameter:
    """The ``config`` parameter of a load: a JSON object of odd values (maybe mutated), or not text."""
    keys = draw(st.lists(st.sampled_from(sorted(CONFIG_VALUES)), max_size=3, unique=True))
    text = json.dumps({key: draw(CONFIG_VALUES[key]) for key in keys}).encode()
    text = draw(mutated(text))
    kind = draw(st.sampled_from(["string_param", "string_param", "bytes_param", "bool_param", "int64_param"]))
    if kind == "string_param":
        return pb.ModelRepositoryParameter(string_param=text.decode("utf8", "replace"))
    if kind == "bytes_param":
        return pb.ModelRepositoryParameter(bytes_param=text)
    if kind == "bool_param":
        return pb.ModelRepositoryParameter(bool_param=draw(st.booleans()))
    return pb.ModelRepositoryParameter(int64_param=draw(st.integers(*INT64)))


@st.composite
def repository_calls(draw: st.DrawFn) -> tuple[str, object]:
    method = draw(st.sampled_from(["RepositoryModelLoad", "RepositoryModelLoad", "RepositoryModelLoad",
                                   "RepositoryModelUnload", "RepositoryIndex"]))
    if method == "RepositoryIndex":
        return method, pb.RepositoryIndexRequest(ready=draw(st.booleans()))
    name = draw(st.one_of(st.just(SPARE), st.just(SPARE), odd_names.filter(lambda n: n != "tiny")))
    load = method == "RepositoryModelLoad"
    request = (pb.RepositoryModelLoadRequest if load else pb.RepositoryModelUnloadRequest)(model_name=name)
    if load and draw(st.booleans()):
        request.parameters["config"].CopyFrom(draw(load_configs()))
    for key, value in draw(repository_parameters).items():
        if key != "config":
            request.parameters[key].CopyFrom(value)
    return method, request


@pytest.fixture(scope="module")
def repository_fuzz_client(fuzz_model: WrittenModel, tmp_path_factory: pytest.TempPathFactory
                           ) -> Iterator[GrpcFuzzClient]:
    root = Path(tmp_path_factory.mktemp("fuzz_repository"))
    (root / "tiny" / "1").mkdir(parents=True)
    (root / "tiny" / "1" / "model.onnx").write_bytes(fuzz_model.path.read_bytes())
    write_classifier(root / SPARE / "1" / "model.onnx", instance_shape=INSTANCE_SHAPE, classes=3, seed=6)
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not ONNX")
    server = ServerProcess("--model-repository", str(root), "--model-control-mode", "explicit",
                           "--max-batch-size", "8", "--threads", "1", "--max-body-bytes", "200000")
    try:
        client = GrpcFuzzClient(server.wait_ready(), WrittenModel(root / "tiny" / "1" / "model.onnx",
                                                                  fuzz_model.weights))
        yield client
        client.channel.close()
    finally:
        stop_with_a_clean_log(server, errors_expected=True)  # loads that fail, and the broken model


@FUZZ_SETTINGS
@given(call=repository_calls())
def test_repository_rpcs_never_get_a_server_error(repository_fuzz_client: GrpcFuzzClient,
                                                  call: tuple[str, object]) -> None:
    repository_fuzz_client.attack(*call)
