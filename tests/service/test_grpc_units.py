"""The pieces behind the gRPC front door: stubs up to date, error table, tensors, top-k, deadline."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import service.errors as errors
from service.app import create_registry
from service.classification import class_count, top_classes
from service.dataplane import DataPlane
from service.errors import DeadlineExceededError, DtypeError, MalformedRequestError, ServiceError
from service.grpc import inference_pb2 as pb
from service.grpc.status import GRPC_CODES, grpc_code
from service.grpc.tensors import CONTENTS_FIELD, add_output, request_arrays
from service.metrics import ServiceMetrics
from service.settings import ServeSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_stubs_match_the_proto() -> None:
    result = subprocess.run([sys.executable, "scripts/generate_grpc_stubs.py", "--check"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_every_client_error_has_a_grpc_code_and_only_500s_are_internal() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ServiceError)]
    for error in classes:  # the class-level status (HTTPRouteError sets its own per instance: HTTP only)
        assert error.status_code >= 500 or error.status_code in GRPC_CODES, error
        assert GRPC_CODES.get(error.status_code, grpc.StatusCode.INTERNAL) != grpc.StatusCode.OK
    assert grpc_code(errors.QueueFullError("x")) == grpc.StatusCode.UNAVAILABLE
    assert grpc_code(errors.PayloadTooLargeError("x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_code(errors.ShapeMismatchError("x")) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16",
                                      "UINT32", "UINT64"])
def test_typed_and_raw_inputs_read_the_same_values(datatype, rng) -> None:
    from service.api.v2 import NUMERIC_DATATYPES

    dtype = NUMERIC_DATATYPES[datatype]
    values = (rng.random((2, 3)) * 100).astype(dtype)
    typed = pb.ModelInferRequest()
    tensor = typed.inputs.add(name="input", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(values.ravel().tolist())
    raw = pb.ModelInferRequest(raw_input_contents=[values.tobytes()])
    raw.inputs.add(name="input", datatype=datatype, shape=[2, 3])
    for request in (typed, raw):
        (array,) = request_arrays(request)
        np.testing.assert_array_equal(array, values)  # exact: no rounding on the way in
        assert array.dtype == dtype


def test_malformed_tensors_are_refused_with_what_was_expected() -> None:
    wrong_field = pb.ModelInferRequest()
    wrong_field.inputs.add(name="input", datatype="FP32", shape=[1]).contents.int_contents.append(1)
    with pytest.raises(DtypeError, match="expects its values in contents.fp32_contents"):
        request_arrays(wrong_field)
    short_raw = pb.ModelInferRequest(raw_input_contents=[b"\0" * 7])
    short_raw.inputs.add(name="input", datatype="FP32", shape=[2])
    with pytest.raises(MalformedRequestError, match="has 7 bytes, expected 8 bytes"):
        request_arrays(short_raw)
    two_raw = pb.ModelInferRequest(raw_input_contents=[b"", b""])
    two_raw.inputs.add(name="input", datatype="FP32", shape=[0])
    with pytest.raises(MalformedRequestError, match="2 entries, expected one per input"):
        request_arrays(two_raw)
    text = pb.ModelInferRequest()
    text.inputs.add(name="input", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"a")
    with pytest.raises(DtypeError, match="cannot become FP32"):
        request_arrays(text)


def test_outputs_go_back_raw_or_typed_bytes_with_length_prefixes() -> None:
    scores = np.array([[0.1, 0.7, 0.2]], np.float32)
    classes = top_classes(scores, 2, ["a", "b", "c"], "p")
    raw, typed = pb.ModelInferResponse(), pb.ModelInferResponse()
    for response, is_raw in ((raw, True), (typed, False)):
        add_output(response, "p", scores, is_raw)
        add_output(response, "c", classes, is_raw)
    assert np.frombuffer(raw.raw_output_contents[0], "<f4").tolist() == scores.ravel().tolist()
    assert raw.raw_output_contents[1] == b"\x07\0\0\0" + b"0.7:1:b" + b"\x07\0\0\0" + b"0.2:2:c"
    assert list(typed.outputs[1].contents.bytes_contents) == [b"0.7:1:b", b"0.2:2:c"]
    assert [o.datatype for o in typed.outputs] == ["FP32", "BYTES"] and list(typed.outputs[1].shape) == [1, 2]


def test_top_classes_match_a_numpy_sort_and_refuse_other_shapes(rng) -> None:
    scores = rng.normal(size=(6, 12)).astype(np.float32)
    answer = top_classes(scores, 4, None, "p")
    for row, entries in zip(scores, answer, strict=True):
        order = np.argsort(-row)[:4]
        assert [int(e.split(b":")[1]) for e in entries] == order.tolist()
        assert [np.float32(e.split(b":")[0]) for e in entries] == row[order].tolist()  # exact round trip
    assert top_classes(scores, 50, None, "p").shape == (6, 12)
    with pytest.raises(MalformedRequestError, match=r"shape \[2, 3, 4\]"):
        top_classes(np.zeros((2, 3, 4), np.float32), 1, None, "p")
    assert class_count({}, "p") is None and class_count({"classification": 3}, "p") == 3
    for bad in (0, -1, True, "3", 2.5):
        with pytest.raises(MalformedRequestError, match="positive integer"):
            class_count({"classification": bad}, "p")


def test_a_shorter_client_deadline_governs_the_request(tiny_model) -> None:
    settings = ServeSettings(model=[tiny_model.path], max_delay_ms=1500, request_timeout_ms=30_000,
                             device="cpu", threads=1)
    metrics = ServiceMetrics()
    registry = create_registry(settings, metrics)
    registry.load_all()
    plane = DataPlane(registry, settings, metrics)

    async def scenario() -> float:
        await plane.start()
        started = time.perf_counter()
        try:
            async with plane.serving("tiny") as item:
                with pytest.raises(DeadlineExceededError):
                    await plane.infer(item, np.ones((1, 8, 8, 1), np.float32), deadline_s=0.2)
            return time.perf_counter() - started
        finally:
            await plane.stop()

    assert asyncio.run(scenario()) < 1.2  # 0.2 s, not the 1.5 s batch delay nor the 30 s timeout
