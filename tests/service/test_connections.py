"""Connection-level behaviour of a real ``lc2d serve`` process, driven with raw sockets.

Read timeouts (408), the keep-alive idle timeout, the connection cap (503 and close, idle
connections evicted first), slowloris under a 1,024 file limit, draining after SIGTERM (503,
not a reset), the graceful timeout, clients that leave (dropped from the queue, 499), and a full
queue refusing before the body is read.
"""

from __future__ import annotations

import http.client
import json
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.service.conftest import REPO_ROOT, ServerProcess, free_port

INSTANCE = np.full((1, 8, 8, 1), 0.25, np.float32)
BODY = json.dumps({"instances": INSTANCE.tolist()}).encode()


def raw_request(body: bytes = BODY, path: str = "/predict", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def read_answer(sock: socket.socket, timeout_s: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Reads one HTTP answer (status, lower-case headers, body) from a raw socket."""
    sock.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(rest) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def metric(server: ServerProcess, name: str, *labels: str) -> float:
    """The sum of the samples of counter ``name`` whose labels include every fragment of ``labels``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(label in line for label in labels))


def predict_ok(server: ServerProcess) -> bool:
    with connect(server) as sock:
        sock.sendall(raw_request())
        return read_answer(sock)[0] == 200


@pytest.fixture(scope="module")
def server(tiny_model) -> Iterator[ServerProcess]:
    """Short read and keep-alive timeouts (1 s) and a cap of 4 connections (shared by these tests)."""
    process = ServerProcess("--model", str(tiny_model.path), "--threads", "1", "--header-timeout-s", "1",
                            "--body-timeout-s", "1", "--keep-alive-timeout-s", "1", "--max-connections", "4")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_headers_sent_too_slowly_get_408_and_close(server) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\n")
        status, headers, body = read_answer(sock, timeout_s=15)
        assert status == 408 and headers["connection"] == "close"
        assert json.loads(body)["code"] == "request_timeout" and "headers" in json.loads(body)["error"]
        assert closed_by_server(sock, 5)


def test_a_connection_that_sends_nothing_gets_408(server) -> None:
    with connect(server) as sock:
        assert read_answer(sock, timeout_s=15)[0] == 408


def test_body_sent_too_slowly_gets_408_and_close(server) -> None:
    with connect(server) as sock:
        sock.sendall(raw_request()[:-10])
        status, headers, body = read_answer(sock, timeout_s=15)
        assert status == 408 and headers["connection"] == "close" and "body" in json.loads(body)["error"]
    assert metric(server, "lc2d_http_requests_total", 'status="408"') >= 1  # the app's read gave up


def test_idle_keep_alive_connection_is_closed_after_its_timeout(server) -> None:
    with connect(server) as sock:
        sock.sendall(raw_request())
        assert read_answer(sock)[0] == 200
        assert not closed_by_server(sock, 0.2)
        assert closed_by_server(sock, 10)


def test_invalid_http_gets_a_json_400_and_close(server) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nBad Header\x01: x\r\n\r\n")
        status, headers, body = read_answer(sock)
        assert status == 400 and headers["connection"] == "close"
        assert json.loads(body)["code"] == "invalid_http"


def test_errors_keep_the_connection_and_the_next_request_is_answered(server) -> None:
    with connect(server) as sock:
        for bad in (b"{", b'{"instances": [[true]]}', b"[" * 5000):
            sock.sendall(raw_request(bad))
            status, headers, _ = read_answer(sock)
            assert 400 <= status < 500 and headers.get("connection") != "close"
            sock.sendall(raw_request())
            assert read_answer(sock)[0] == 200


def test_beyond_the_connection_cap_idle_connections_make_room(server) -> None:
    idle = [connect(server) for _ in range(4)]
    time.sleep(0.2)
    try:
        assert predict_ok(server)  # the oldest idle connection was closed to make room
        status, headers, body = read_answer(idle[0], timeout_s=5)
        assert status == 503 and json.loads(body)["code"] == "too_many_connections"
    finally:
        for sock in idle:
            sock.close()


def test_beyond_the_connection_cap_with_every_connection_busy_the_new_one_gets_503(
        start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--threads", "1", "--max-connections", "3",
                          "--body-timeout-s", "30")
    busy = [connect(server) for _ in range(3)]
    try:
        for sock in busy:
            sock.sendall(raw_request()[:-10])  # headers and most of the body: busy, not idle
        time.sleep(0.3)
        with connect(server) as extra:
            status, headers, body = read_answer(extra, timeout_s=5)
            assert status == 503 and headers["connection"] == "close"
            assert json.loads(body)["code"] == "too_many_connections"
        busy[0].sendall(raw_request()[-10:])  # the busy ones finish normally
        assert read_answer(busy[0])[0] == 200
    finally:
        for sock in busy:
            sock.close()


def test_a_thousand_slowloris_connections_do_not_stop_normal_clients_under_a_1024_file_limit(
        tiny_model) -> None:
    port = free_port()
    command = [sys.executable, "-m", "lc2d", "serve", "--model", str(tiny_model.path), "--port", str(port),
               "--threads", "1", "--log-level", "error"]
    limit = (1024, 1024)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limit))
    server = ServerProcess.__new__(ServerProcess)
    server.port, server.url, server.process = port, f"http://127.0.0.1:{port}", process
    slow: list[socket.socket] = []
    try:
        server.wait_ready()
        for _ in range(1000):  # each sends part of its headers, then nothing
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: slow\r\n")
            slow.append(sock)
        answered = [predict_ok(server) for _ in range(20)]
        assert all(answered)
        assert process.poll() is None
    finally:
        for sock in slow:
            sock.close()
        process.terminate()
        process.wait(timeout=30)


def _sigterm_and_wait(server: ServerProcess) -> float:
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    return time.monotonic() - started


def test_after_sigterm_requests_on_open_connections_get_503_not_a_reset(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--threads", "1")
    with connect(server) as sock:
        sock.sendall(raw_request())
        assert read_answer(sock)[0] == 200
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # uvicorn has begun its shutdown
        sock.sendall(raw_request())
        status, headers, body = read_answer(sock)
        assert status == 503 and headers["connection"] == "close"
        assert json.loads(body)["code"] == "shutting_down"
    server.process.wait(timeout=30)


def test_graceful_timeout_bounds_shutdown_with_a_slow_body_open(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--threads", "1", "--body-timeout-s", "120",
                          "--graceful-timeout-s", "1")
    with connect(server) as sock:
        sock.sendall(raw_request()[:-10])  # a request that never finishes its body
        time.sleep(0.3)
        assert _sigterm_and_wait(server) < 10  # 1 s of grace, the drain window, process exit


def write_slow_model(path: Path, layers: int = 400, width: int = 1024) -> None:
    """``input [N, 8, 8, 1]`` -> ``layers`` MatMuls of ``width`` x ``width``: milliseconds per instance."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["input"], ["h0"], axis=1),
             helper.make_node("MatMul", ["h0", "w_in"], ["x0"])]
    weights = [numpy_helper.from_array(rng.normal(0, 0.01, (64, width)).astype(np.float32), "w_in"),
               numpy_helper.from_array(rng.normal(0, 0.03, (width, width)).astype(np.float32), "w")]
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "w"], [f"x{i + 1}"]))
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 8, 1])]
    outputs = [helper.make_tensor_value_info(f"x{layers}", TensorProto.FLOAT, ["batch", width])]
    graph = helper.make_graph(nodes, "slow", inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """A model of ~0.1-0.3 s per instance, one instance per run, 8 requests of queue at most."""
    path = tmp_path_factory.mktemp("slow") / "slow.onnx"
    write_slow_model(path)
    process = ServerProcess("--model", str(path), "--threads", "1", "--max-batch-size", "1",
                            "--max-queue", "8")
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_requests_whose_client_left_are_dropped_from_the_queue(slow_server) -> None:
    gone = []
    for _ in range(8):  # every one of them is queued behind the first
        sock = connect(slow_server)
        sock.sendall(raw_request())
        gone.append(sock)
    deadline = time.monotonic() + 30
    while metric(slow_server, "lc2d_queue_depth") < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    for sock in gone:  # the clients leave while their requests wait
        sock.close()
    started = time.monotonic()
    deadline = started + 60
    while (metric(slow_server, "lc2d_http_requests_total", 'status="499"') < 8
           and time.monotonic() < deadline):
        time.sleep(0.1)
    dropped = metric(slow_server, "lc2d_dropped_requests_total", 'reason="client_gone"')
    assert dropped >= 3, metric_text(slow_server)
    assert metric(slow_server, "lc2d_inferences_total") <= 8 - dropped  # the dropped ones never ran
    assert metric(slow_server, "lc2d_http_requests_total", 'status="499"') >= dropped
    assert predict_ok(slow_server)


def test_a_full_queue_answers_503_before_the_body_is_sent(slow_server) -> None:
    waiting = [connect(slow_server) for _ in range(10)]
    try:
        for sock in waiting:
            sock.sendall(raw_request())
        deadline = time.monotonic() + 30
        while metric(slow_server, "lc2d_queue_depth") < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        with connect(slow_server) as late:
            late.sendall(raw_request()[:-len(BODY)])  # headers only: the body is never sent
            status, _, body = read_answer(late, timeout_s=10)
            assert status == 503 and json.loads(body)["code"] == "queue_full"
    finally:
        for sock in waiting:
            sock.close()


def test_client_disconnect_mid_body_is_one_log_line_and_a_499(start_server, tiny_model) -> None:
    server = start_server("--model", str(tiny_model.path), "--threads", "1", "--log-level", "info")
    with connect(server) as sock:
        sock.sendall(raw_request()[:-10])
        time.sleep(0.3)
    deadline = time.monotonic() + 30
    while metric(server, "lc2d_http_requests_total", 'status="499"') < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(server, "lc2d_http_requests_total", 'status="499"') == 1
    assert metric(server, "lc2d_http_requests_total", 'status="500"') == 0
    server.process.terminate()
    log, _ = server.process.communicate(timeout=30)
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "client_disconnected" in line]) == 1


def test_request_id_is_in_the_error_answer_and_paths_are_not(start_server, model_repository) -> None:
    server = start_server("--model-repository", str(model_repository["root"]), "--threads", "1")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v2/models/broken/infer", b"{}", {"Content-Type": "application/json",
                                                                 "X-Request-ID": "abc-123"})
    answer = connection.getresponse()
    body = json.loads(answer.read())
    connection.close()
    assert answer.status == 503 and answer.getheader("x-request-id") == "abc-123"
    assert "model.onnx" in body["error"] and "/" not in body["error"]  # the file, not where it is


def metric_text(server: ServerProcess) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("GET", "/metrics")
    return "\n".join(line for line in connection.getresponse().read().decode().splitlines()
                     if "lc2d_" in line and "bucket" not in line and "#" not in line)
