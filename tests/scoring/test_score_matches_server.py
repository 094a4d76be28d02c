"""`lc2d score` gives, bit for bit, what a live `/predict` answers for the same rows."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from lc2d.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _predict_npy(url: str, batch: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    np.save(buffer, batch)
    request = urllib.request.Request(url + "/predict", buffer.getvalue(), {
        "Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return np.load(io.BytesIO(answer.read()))


def test_score_output_equals_live_predict_for_the_same_batches(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any) -> None:
    x = rng.normal(size=(37, 8, 8, 1)).astype(np.float32)  # two full batches and a ragged one
    np.save(tmp_path / "x.npy", x)
    assert main(["score", str(digits_model.path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--batch-size", "16", "--device", "cpu", "--no-progress"]) == 0
    scored = np.load(tmp_path / "y.npy")

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "lc2d", "serve", "--model", str(digits_model.path), "--host", "127.0.0.1",
         "--port", str(port), "--grpc-port", "0", "--device", "cpu", "--log-level", "warning"],
        cwd=REPO_ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for the server to come up
            try:
                urllib.request.urlopen(url + "/v2/health/ready", timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "server exited"
                time.sleep(0.1)
        served = np.concatenate([_predict_npy(url, x[i:i + 16]) for i in range(0, len(x), 16)])
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert served.dtype == scored.dtype == np.float32
    np.testing.assert_array_equal(scored, served)
