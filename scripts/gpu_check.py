"""Checks the CUDA execution-provider path on a machine with an NVIDIA GPU and onnxruntime-gpu.

For each model given: serves it with ``lc2d serve --device cuda`` and with ``--device auto`` on
127.0.0.1, reads the providers from the start-up log and from the model metadata endpoint,
sends random batches to ``POST /predict`` (``.npy``) and ``/v2/models/{name}/infer`` (JSON), and
compares every answer with a CPU ONNX Runtime run of the same model (tolerance below). It also
times the model on both providers at batch 1 and 64 (medians) for the record. Prints one JSON
report; exit code 0 when every check passed, 1 otherwise, 2 on bad arguments or no CUDA.

Usage:
    python scripts/gpu_check.py MODEL.onnx [MODEL.onnx ...] [--json-out report.json]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-3, 1e-4  # CUDA kernels (TF32 off by default in ORT) against the CPU provider


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def instance_shape(session: Any) -> list[int]:
    """One instance's shape, as the server's input contract reads it (free dimensions: 1)."""
    from service.contract import InputContract

    return [d or 1 for d in InputContract.from_session(session).instance_shape]


def median_ms(session: Any, feed: dict[str, np.ndarray], runs: int = 15) -> float:
    session.run(None, feed)
    times = []
    for _ in range(runs):
        tick = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - tick)
    return statistics.median(times) * 1e3


def serve_and_check(model: Path, device: str, cpu: Any, rng: np.random.Generator) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, "-m", "lc2d", "serve", "--model", str(model), "--device", device,
               "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0", "--log-level", "info"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"device": device}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                result["error"] = f"server exited with {process.returncode}"
                return result
            try:
                if request(f"{base}/v2/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        name = model.stem
        status, body = request(f"{base}/v2/models/{name}")
        metadata = json.loads(body)
        result["metadata_providers"] = metadata["parameters"]["providers"]
        input_name = cpu.get_inputs()[0].name
        shape = instance_shape(cpu)
        errors = []
        for size in (1, 7, 64):
            batch = rng.normal(size=(size, *shape)).astype(np.float32)
            expected = cpu.run(None, {input_name: batch})[0]
            buffer = io.BytesIO()
            np.save(buffer, batch)
            status, body = request(f"{base}/predict", buffer.getvalue(),
                                   {"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
            got = np.load(io.BytesIO(body)) if status == 200 else None
            errors.append(_compare(f"/predict npy batch {size}", status, got, expected))
            infer = {"inputs": [{"name": input_name, "shape": list(batch.shape), "datatype": "FP32",
                                 "data": batch.ravel().tolist()}]}
            status, body = request(f"{base}/v2/models/{name}/infer", json.dumps(infer).encode(),
                                   {"Content-Type": "application/json"})
            got = None
            if status == 200:
                output = json.loads(body)["outputs"][0]
                got = np.asarray(output["data"], np.float32).reshape(output["shape"])
            errors.append(_compare(f"v2 infer JSON batch {size}", status, got, expected))
        result["checks"] = errors
    finally:
        process.terminate()
        try:
            log, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            log, _ = process.communicate()
        result["startup_log"] = [line for line in log.splitlines() if "providers" in line][:4]
        result["exit_code"] = process.returncode
    return result


def _compare(what: str, status: int, got: np.ndarray | None, expected: np.ndarray) -> dict[str, Any]:
    if got is None:
        return {"check": what, "ok": False, "status": status}
    ok = got.shape == expected.shape and bool(np.allclose(got, expected, rtol=RTOL, atol=ATOL))
    error = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else None
    return {"check": what, "ok": ok, "status": status, "max_abs_error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        print(f"gpu_check: onnxruntime {onnxruntime.__version__} has no CUDA provider (has {available})",
              file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    report: dict[str, Any] = {"onnxruntime": onnxruntime.__version__, "available_providers": available,
                              "tolerance": {"rtol": RTOL, "atol": ATOL}, "models": []}
    passed = True
    for model in args.models:
        if not model.is_file():
            parser.error(f"{model} does not exist")
        cpu = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        gpu = onnxruntime.InferenceSession(str(model), providers=["CUDAExecutionProvider",
                                                                  "CPUExecutionProvider"])
        shape = instance_shape(cpu)
        name = cpu.get_inputs()[0].name
        timings = {}
        for size in (1, 64):
            feed = {name: rng.normal(size=(size, *shape)).astype(np.float32)}
            timings[f"batch_{size}"] = {"cpu_ms": median_ms(cpu, feed), "cuda_ms": median_ms(gpu, feed)}
        entry = {"model": str(model), "session_providers": gpu.get_providers(), "timings": timings,
                 "served": [serve_and_check(model, device, cpu, rng) for device in ("cuda", "auto")]}
        for served in entry["served"]:
            ok = ("error" not in served and served["metadata_providers"][0] == "CUDAExecutionProvider"
                  and all(check["ok"] for check in served["checks"]))
            served["ok"] = ok
            passed = passed and ok
        report["models"].append(entry)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print("gpu_check: " + ("every check passed" if passed else "FAILED"), file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
