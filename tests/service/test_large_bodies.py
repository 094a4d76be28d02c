"""Large JSON bodies are decoded off the event loop: liveness answers while they are read.

A bounded run of ``scripts/liveness_under_large_bodies.py`` (4 clients x 1 body of 16 MiB; the
full measurement, 4 clients x 32 MiB, is in docs/reliability.md). Timings are compared within
the run: a health check during the flood must take well under the time of one large request
(a body decoded on the event loop would stall it for most of that time; with Python's default
5 ms switch interval the event loop waited up to 5 ms for the interpreter lock on every turn
while a body was decoded, p99 0.22-0.24 of a request's time on a quiet machine), and the server's
memory growth per body in flight must stay within 4x the body's size. The bodies are large
enough that decoding dominates a request: with 4 MiB bodies a request took 0.1 s on a quiet
machine, and a health check's fixed hiccups (54 ms) came close to half of it. One body is sent
before the memory baseline, so the first large request's one-time allocations (ONNX Runtime's
arena for that batch size, the decoding thread) are not counted per body.
"""

import importlib.util
import sys
from pathlib import Path

from tests.service.conftest import REPO_ROOT, free_port


def _script():
    path = REPO_ROOT / "scripts" / "liveness_under_large_bodies.py"
    spec = importlib.util.spec_from_file_location("liveness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["liveness"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_liveness_and_memory_while_clients_send_large_json_bodies(tmp_path: Path) -> None:
    liveness = _script()
    body = liveness.json_body(16)
    model = tmp_path / "big.onnx"
    liveness.write_model(model)
    port = free_port()
    process = liveness.start_server(model, port, len(body) + 2**20)
    try:
        result = liveness.flood(port, process.pid, clients=4, bodies=1, body=body, warmup=1)
    finally:
        process.terminate()
        process.wait(timeout=60)
    assert result.requests_ok == 4  # answered (decoded whole, validated, run)
    assert result.live_probes >= 3
    assert result.live_p99_ms / 1000 < 0.15 * result.request_s_median, result
    assert result.peak_growth_per_body < 4, result
