"""The peer benchmark's pieces that need no peer environment: a short lc2d-only run against a real
server (answers checked against a direct ONNX Runtime run), the per-round ratios, and the
environment reuse rules."""

import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks import bench_peers
from benchmarks.bench_peers import PEERS, compare, ensure_environment, peer_requirements


def test_bench_peers_runs_lc2d_alone_and_writes_the_report(tiny_model, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    (tmp_path / "peers.md").write_text("# kept\n\nhand-written text\n")
    code = bench_peers.main(["--peers", "lc2d", "--models", str(tiny_model.path), "--requests", "24",
                             "--rounds", "2", "--concurrency", "1,3", "--threads", "1",
                             "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "perf" / "peers.json").read_text())
    (model,) = report["models"]
    assert model["model"] == "tiny" and model["instance_shape"] == [8, 8, 1]
    # each body's answer was checked against direct ONNX Runtime (check_answer raises above 1e-4)
    assert set(model["answers"]) == {"lc2d v2-json", "lc2d v2-binary"}
    assert all(a["max_rel_error"] <= 1e-4 and a["answer_bytes"] > 0 for a in model["answers"].values())
    # the binary body carries 64 floats as 256 raw bytes: fewer bytes on the wire than JSON's text
    sizes = {k: a["request_bytes"] for k, a in model["answers"].items()}
    assert sizes["lc2d v2-binary"] < sizes["lc2d v2-json"]
    table = model["summary"]["table"]
    assert {(r["body"], r["clients"]) for r in table} == {
        (b, c) for b in ("v2-json", "v2-binary") for c in (1, 3)}
    assert all(r["rounds"] == 2 and r["throughput_rps_range"][0] <= r["throughput_rps"]
               <= r["throughput_rps_range"][1] and r["wire_floor_rps"] > r["throughput_rps"] for r in table)
    assert len(model["rounds"]) == 2 * 2 * 2  # bodies x client counts x rounds
    doc = (tmp_path / "peers.md").read_text()
    assert doc.startswith("# kept") and bench_peers.BEGIN in doc and "| lc2d serve | v2-binary | 3 |" in doc
    assert (tmp_path / "perf" / "peers.png").stat().st_size > 0


def _row(server: str, body: str, clients: int, round_: int, rps: float, p50: float) -> dict:
    return {"server": server, "body": body, "clients": clients, "round": round_, "throughput_rps": rps,
            "p50_ms": p50, "p99_ms": 2 * p50}


def test_compare_gives_per_round_ratios_at_the_fewest_and_most_clients() -> None:
    rows = [_row("lc2d", "v2-json", 1, 0, 100, 2.0), _row("mlserver", "v2-json", 1, 0, 50, 5.0),
            _row("lc2d", "v2-json", 1, 1, 100, 4.0), _row("mlserver", "v2-json", 1, 1, 50, 6.0),
            _row("lc2d", "v2-json", 8, 0, 300, 9.0), _row("mlserver", "v2-json", 8, 0, 600, 9.0),
            _row("lc2d", "v2-json", 8, 1, 300, 9.0), _row("mlserver", "v2-json", 8, 1, 200, 9.0)]
    p50, throughput = compare(rows)
    assert (p50["metric"], p50["clients"], p50["range"]) == ("p50_ms", 1, [1.5, 2.5])
    assert p50["lc2d_ahead_by"] == pytest.approx(2.0) and p50["ahead"]
    assert (throughput["metric"], throughput["clients"]) == ("throughput_rps", 8)
    assert throughput["range"] == [0.5, 1.5]
    assert throughput["lc2d_ahead_by"] == pytest.approx(1.0) and not throughput["ahead"]  # a tie is not ahead


def test_ensure_environment_reuses_a_stamped_one_and_refuses_to_guess(tmp_path: Path) -> None:
    peer = PEERS["mlserver"]
    with pytest.raises(RuntimeError, match="expected an environment at .* Received: none"):
        ensure_environment(peer, tmp_path, install=False, log=print)
    stamp = tmp_path / peer.name / "lc2d-peer.json"
    stamp.parent.mkdir()
    stamp.write_text(json.dumps({"requirements": ["mlserver==0.1"]}))  # another pin: not reused
    with pytest.raises(RuntimeError, match="expected an environment"):
        ensure_environment(peer, tmp_path, install=False, log=print)
    stamp.write_text(json.dumps({"requirements": peer_requirements(peer)}))
    assert ensure_environment(peer, tmp_path, install=False, log=print) == tmp_path / peer.name / "bin"
    ours = ensure_environment(PEERS["lc2d"], tmp_path, install=False, log=print)
    assert ours == Path(sys.executable).parent


def test_every_peer_pins_its_versions_and_onnx_runtime() -> None:
    for peer in PEERS.values():
        assert all("==" in r for r in peer.requirements)
        assert f"onnxruntime=={bench_peers.ORT_VERSION}" in peer_requirements(peer)
        assert set(peer.bodies) <= set(bench_peers.BODIES)


def test_raw_connection_reads_chunked_answers_as_ray_serve_sends_them() -> None:
    import socket
    import threading

    from benchmarks.bench_service import RawConnection

    body = b'{"outputs": [1, 2, 3]}' * 50
    pieces = [body[:7], body[7:900], body[900:]]
    answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"".join(
        b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            for _ in range(2):  # two requests on one keep-alive connection, the answer in small writes
                conn.recv(65536)
                for start in range(0, len(answer), 100):
                    conn.sendall(answer[start:start + 100])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    connection = RawConnection(listener.getsockname()[1])
    connection.buffer = bytearray(64)
    try:
        for _ in range(2):
            assert connection.post("/infer", b"{}", {"Content-Type": "application/json"}) == 200
            assert connection.body() == body and connection.answer_bytes == len(answer)
    finally:
        connection.close()
        listener.close()
    thread.join(timeout=10)


def run_lc2d_failing(monkeypatch, tiny_model, tmp_path: Path, fails: Callable[[int], bool], rounds: str,
                     concurrency: str) -> tuple[int, list[int], dict]:
    """``bench_peers.main`` on lc2d alone, its n-th measurement (1-based) refused where ``fails(n)``.

    Returns the exit code, the clients of every measurement tried and the model's JSON report.
    """
    real, calls = bench_peers.drive_payloads, []

    def failing(port, path, payloads, clients):  # noqa: ANN001, ANN202
        calls.append(clients)
        if fails(len(calls)):
            raise ConnectionRefusedError(111, "Connection refused")
        return real(port, path, payloads, clients)

    monkeypatch.setattr(bench_peers, "drive_payloads", failing)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    code = bench_peers.main(["--peers", "lc2d", "--models", str(tiny_model.path), "--requests", "12",
                             "--rounds", rounds, "--concurrency", concurrency, "--threads", "1",
                             "--out", str(tmp_path)])
    (model,) = json.loads((tmp_path / "perf" / "peers.json").read_text())["models"]
    return code, calls, model


def test_bench_peers_keeps_the_rounds_measured_before_a_server_stops_answering(
        tiny_model, tmp_path: Path, monkeypatch) -> None:
    # from the third measurement on, as when Ray Serve's processes were stopped mid-run
    code, calls, model = run_lc2d_failing(monkeypatch, tiny_model, tmp_path, lambda n: n >= 3, "2", "1,2")
    # the third call failed with the server still answering probes: one retry (call 4) failed too,
    # and after that the server is not driven again
    assert code == 0 and len(calls) == 4
    assert [(r["body"], r["round"]) for r in model["rounds"]] == [("v2-json", 0), ("v2-binary", 0)]
    assert "ConnectionRefusedError" in model["failures"]["lc2d"]["error"]
    assert "lc2d serve stopped answering" in (tmp_path / "peers.md").read_text()


def test_bench_peers_measures_once_more_after_one_refused_connection(tiny_model, tmp_path: Path,
                                                                     monkeypatch) -> None:
    # one connection refused under load; the server itself is fine
    code, calls, model = run_lc2d_failing(monkeypatch, tiny_model, tmp_path, lambda n: n == 2, "1", "1")
    assert code == 0 and len(calls) == 3  # v2-json, v2-binary refused, v2-binary again
    assert [r["body"] for r in model["rounds"]] == ["v2-json", "v2-binary"] and not model["failures"]
    assert "ConnectionRefusedError" in model["rounds"][1]["retried_after"]
    assert "failed once (ConnectionRefusedError" in (tmp_path / "peers.md").read_text()
