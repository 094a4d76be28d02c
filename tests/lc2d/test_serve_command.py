"""First-hour errors of `lc2d serve`: a taken port and an empty repository, through the real CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.service.conftest import REPO_ROOT, ServerProcess, write_classifier


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    # gRPC off unless a test asks (a later --grpc-port wins): port 8001 may be taken on this machine
    return subprocess.run([sys.executable, "-m", "lc2d", "serve", "--grpc-port", "0", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_port_in_use_is_one_line_exit_2_and_no_url(tmp_path: Path) -> None:
    write_classifier(tmp_path / "tiny.onnx")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = serve("--model", str(tmp_path / "tiny.onnx"), "--port", str(port))
    assert result.returncode == 2
    assert result.stdout == ""  # nothing announced before the error
    assert result.stderr == (f"lc2d serve: error: --port {port}: expected a free port on 127.0.0.1, "
                             "received one already in use (another server?); choose another with --port\n")


def test_grpc_port_in_use_is_one_line_exit_2_and_no_url(tmp_path: Path) -> None:
    write_classifier(tmp_path / "tiny.onnx")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = serve("--model", str(tmp_path / "tiny.onnx"), "--port", "0", "--grpc-port", str(port))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"lc2d serve: error: --grpc-port {port}: expected a free port on 127.0.0.1, "
                             "received one already in use (another server?); choose another with "
                             "--grpc-port\n")


def test_empty_repository_is_refused_when_no_model_could_arrive(tmp_path: Path) -> None:
    result = serve("--model-repository", str(tmp_path), "--port", "0")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lc2d serve: error: --model-repository: expected at "
                                                   "least one model as ")


def test_empty_repository_in_poll_mode_starts_not_ready_with_a_warning(tmp_path: Path) -> None:
    server = ServerProcess("--model-repository", str(tmp_path), "--model-control-mode", "poll").wait_ready()
    try:
        try:
            urllib.request.urlopen(server.url + "/v2/health/ready", timeout=10)
            raise AssertionError("an empty server answered ready")
        except urllib.error.HTTPError as err:
            assert err.code == 503
        server.process.terminate()
        output = server.process.stdout.read()  # stderr goes there too; EOF once the process ends
    finally:
        server.stop()
    assert f"lc2d serve: warning: no model yet in {tmp_path}/<name>/<version>/model.onnx" in output
