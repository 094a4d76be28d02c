"""The service benchmark's HTTP client and a short end-to-end run, against real servers on 127.0.0.1."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_service
from benchmarks.bench_service import RawConnection, StdlibConnection

NPY = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_raw_connection_reads_each_whole_answer_on_one_keep_alive_connection(live_server, tiny_model,
                                                                             rng) -> None:
    raw, stdlib = RawConnection(live_server.port), StdlibConnection(live_server.port)
    raw.buffer = bytearray(16)  # answers are larger: the buffer must grow, the reads must loop
    try:
        for size in (1, 7, 64):
            batch = rng.normal(size=(size, 8, 8, 1)).astype(np.float32)
            assert raw.post("/predict", npy(batch), NPY) == 200
            np.testing.assert_allclose(np.load(io.BytesIO(raw.body())), tiny_model.reference(batch),
                                       rtol=1e-5, atol=1e-6)
            assert raw.post("/predict", json.dumps({"instances": batch.tolist()}).encode(),
                            {"Content-Type": "application/json"}) == 200
            assert len(json.loads(raw.body())["predictions"]) == size
        assert raw.post("/predict", b"x", {"Content-Type": "text/plain"}) == 415  # errors: same connection
        assert "expected one of" in json.loads(raw.body())["error"]
        assert stdlib.post("/predict", npy(batch), NPY) == 200
    finally:
        raw.close()
        stdlib.close()


def test_bench_service_writes_throughput_latency_and_paired_overhead(tiny_model, tmp_path: Path,
                                                                      monkeypatch) -> None:
    out = tmp_path / "bench.json"
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    code = bench_service.main(["--model", str(tiny_model.path), "--requests", "40", "--concurrency", "1,4",
                               "--paired", "30", "--rounds", "2", "--threads", "1", "--json-out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert {(r["batching"], r["body"], r["concurrency"]) for r in report["server"]} == {
        (mode, body, c) for mode in ("on", "off") for body in ("json", "npy", "grpc") for c in (1, 4)}
    assert all(r["throughput_rps"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"] and r["rounds"] == 2
               for r in report["server"])
    assert len(report["rounds"]) == 3 * 2 * 2 * 2  # bodies x levels x batching on/off x rounds
    assert report["ratios"]["grpc_over_npy_throughput_c4_batching"] > 0
    name = "grpc_over_npy_throughput_c4_batching"
    rounds, median = report["ratio_rounds"][name], report["ratios"][name]
    assert len(rounds) == 2 and min(rounds) <= median <= max(rounds)
    assert len(report["machine"]["load_average"]["start"]) == 3
    batched = report["direct_onnxruntime"]["batched"]
    assert batched["batch"] == 40 and batched["throughput_rps"] > 0  # 40 requests: one batch of all
    assert report["ratios"]["direct_batching_speedup"] > 0
    for body in ("json", "npy", "grpc"):
        paired = report["paired_c1"][body]
        assert paired["server"]["p50_ms"] > 0 and paired["direct"]["p50_ms"] > 0
        assert paired["pairs"] == 30 - paired["warmup"] and len(paired["load_average"]) == 2
        assert "server_overhead_median_pair_ms_c1_" + body in report["ratios"]
    assert report["settings"]["client"] == "raw"


def test_grpc_load_generators_send_every_request_and_fail_on_an_error(live_server, tiny_model, rng) -> None:
    bench_service.MODEL_NAME[0], bench_service.INPUT_NAME[0] = tiny_model.path.stem, "input"
    instances = rng.normal(size=(30, 8, 8, 1)).astype(np.float32)
    for kind in ("aio", "threads"):
        result = bench_service.drive(live_server.grpc_port, instances, 4, "grpc", grpc_client=kind)
        assert result["throughput_rps"] > 0 and 0 < result["p50_ms"] <= result["p99_ms"]
    wrong = bench_service.encode(instances[0, :4], "grpc")[0]  # a shape the model refuses
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        bench_service.drive_grpc(live_server.grpc_port, [wrong] * 3, 2)


def test_the_direct_session_of_the_paired_measurement_stops_spinning_between_runs(tiny_model) -> None:
    options = bench_service.ort_session(tiny_model.path, None).get_session_options()
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"  # as the server's
