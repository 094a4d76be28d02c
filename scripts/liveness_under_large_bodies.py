"""Liveness and memory of ``lc2d serve`` while clients send large JSON bodies.

Starts a server for a model with a large input (``[N, 256, 256, 3]``), then ``--clients``
threads each send ``--bodies`` JSON ``predict`` bodies of about ``--body-mib`` MiB over keep-alive
connections, while a prober asks ``GET /v2/health/live`` every 20 ms. Prints one table and
writes a JSON file: liveness latency (p50, p99, max) during the flood and, for comparison on
the same (possibly shared) machine, during 3 s before it; time per large request,
the server's RSS before, at its peak, and after, and the peak growth per body in flight.

Usage:
    python scripts/liveness_under_large_bodies.py [--clients 4] [--bodies 3] [--body-mib 32]
        [--out artifacts/liveness.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_SHAPE = (256, 256, 3)


@dataclass(frozen=True)
class FloodResult:
    """What one flood measured."""

    clients: int
    bodies_per_client: int
    body_bytes: int
    requests_ok: int
    request_s_median: float
    live_probes: int
    live_p50_ms: float
    live_p99_ms: float
    live_max_ms: float
    idle_p50_ms: float  # the same probes for 3 s before the flood: what the machine gives anyway
    idle_p99_ms: float
    rss_before_mib: float
    rss_peak_mib: float
    rss_after_mib: float
    peak_growth_per_body: float  # (peak - before) / (bodies in flight) / body size


def json_body(mib: float) -> bytes:
    """A ``{"instances": ...}`` body of about ``mib`` MiB (float32 values as ``json.dumps`` writes them)."""
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(1, *INSTANCE_SHAPE)).astype(np.float32)
    per_instance = len(json.dumps(sample.tolist()))
    count = max(1, round(mib * 2**20 / per_instance))
    batch = np.repeat(sample, count, axis=0)
    return json.dumps({"instances": batch.tolist()}).encode()


def start_server(model: Path, port: int, limit: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "lc2d", "serve", "--model", str(model), "--port", str(port),
               "--threads", "1", "--max-body-bytes", str(limit), "--max-json-bytes", str(limit),
               "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/v2/health/live")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


def flood(port: int, pid: int, clients: int, bodies: int, body: bytes, warmup: int = 0) -> FloodResult:
    """Runs the flood against a started server; see the module docstring.

    ``warmup`` bodies are sent (one at a time) before the memory baseline is read, so that
    one-time allocations of the first large request (ONNX Runtime's arena for that batch size,
    the decoding thread) are not counted as growth per body.
    """
    server = psutil.Process(pid)
    for _ in range(warmup):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        connection.getresponse().read()
        connection.close()
    time.sleep(0.5)
    idle = _probe_for(port, 3.0)
    before = server.memory_info().rss
    peak = before
    latencies: list[float] = []
    request_times: list[float] = []
    statuses: list[int] = []
    done = threading.Event()

    def probe() -> None:
        nonlocal peak
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not done.is_set():
            started = time.perf_counter()
            connection.request("GET", "/v2/health/live")
            connection.getresponse().read()
            latencies.append(time.perf_counter() - started)
            peak = max(peak, server.memory_info().rss)
            time.sleep(0.02)

    def send() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        for _ in range(bodies):
            started = time.perf_counter()
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            request_times.append(time.perf_counter() - started)
            statuses.append(answer.status)

    prober = threading.Thread(target=probe)
    prober.start()
    senders = [threading.Thread(target=send) for _ in range(clients)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join()
    done.set()
    prober.join()
    time.sleep(1.0)
    after = server.memory_info().rss
    ms = np.asarray(latencies) * 1000
    return FloodResult(
        clients=clients, bodies_per_client=bodies, body_bytes=len(body),
        requests_ok=statuses.count(200), request_s_median=float(np.median(request_times)),
        live_probes=len(latencies), live_p50_ms=float(np.percentile(ms, 50)),
        live_p99_ms=float(np.percentile(ms, 99)), live_max_ms=float(ms.max()),
        idle_p50_ms=float(np.percentile(idle, 50)), idle_p99_ms=float(np.percentile(idle, 99)),
        rss_before_mib=before / 2**20, rss_peak_mib=peak / 2**20, rss_after_mib=after / 2**20,
        peak_growth_per_body=(peak - before) / clients / len(body))


def _probe_for(port: int, seconds: float) -> np.ndarray:
    """Health-check latencies (ms), one probe every 20 ms for ``seconds``, with nothing else sent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection.request("GET", "/v2/health/live")
        connection.getresponse().read()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.02)
    return np.asarray(latencies) * 1000


def write_model(path: Path) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from tests.service.conftest import write_classifier

    write_classifier(path, instance_shape=INSTANCE_SHAPE, classes=10, seed=3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--bodies", type=int, default=3, help="bodies per client")
    parser.add_argument("--body-mib", type=float, default=32.0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "liveness.json")
    args = parser.parse_args(argv)
    body = json_body(args.body_mib)
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "big.onnx"
        write_model(model)
        port = _free_port()
        process = start_server(model, port, len(body) + 2**20)
        try:
            result = flood(port, process.pid, args.clients, args.bodies, body)
        finally:
            process.terminate()
            process.wait(timeout=60)
    for key, value in asdict(result).items():
        print(f"{key:>22}  {value:.3f}" if isinstance(value, float) else f"{key:>22}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
