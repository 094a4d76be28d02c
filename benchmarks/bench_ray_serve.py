"""The cost of serving through Ray Serve: ``lc2d serve --ray`` against ``lc2d serve``, same model.

Starts both on 127.0.0.1 with the same settings (batching on, the same ONNX Runtime threads):
``lc2d serve`` (one uvicorn process) and ``lc2d serve --ray --replicas N`` (a local Ray instance:
Ray Serve's HTTP proxy in front of N replicas of the same app). Checks that both answer one
request like a direct ONNX Runtime run, then drives each with C concurrent keep-alive clients
(``bench_service``'s client: one ``.npy`` instance per ``/predict`` request) and measures
throughput and p50 latency. Interleaved: each round measures direct then Ray at each client
count, so both sides of a ratio are measured seconds apart on a machine whose speed drifts. Rows
are medians over the rounds; ratios are medians of per-round ratios. Prints a Markdown table and
writes a JSON file.

Usage:
    python benchmarks/bench_ray_serve.py --model artifacts/models/digits/1/model.onnx \
        --requests 1000 --rounds 3 --json-out docs/bench_ray_serve.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_service import RawConnection, Server, drive, free_port, input_shape, wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the .onnx model to serve")
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement (default 1000)")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated client counts (default 1,64)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--replicas", type=int, default=1, help="Ray Serve replicas (default 1)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads of each server / replica (default 1)")
    parser.add_argument("--json-out", type=Path, default=Path("docs/bench_ray_serve.json"))
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"--model {args.model} does not exist")
    return args


class RayServer:
    """``lc2d serve --ray`` (its own local Ray instance) on a free port, started and ready."""

    def __init__(self, model: Path, extra: list[str]) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "lc2d", "serve", "--ray", "--model", str(model),
                   "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                   "--max-queue", "100000", *extra]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, env={**os.environ, "RAY_DEDUP_LOGS": "0"})

        def ready() -> bool:
            url = f"http://127.0.0.1:{self.port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)

        wait_until(ready, self.process, 300, "lc2d serve --ray")

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: the command deletes the application and stops Ray
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def check_answer(port: int, model: Path, instance: np.ndarray) -> float:
    """Largest absolute difference between the server's answer and a direct ONNX Runtime run."""
    import onnxruntime

    buffer = io.BytesIO()
    np.save(buffer, instance[None])
    connection = RawConnection(port)
    status = connection.post("/predict", buffer.getvalue(),
                             {"Content-Type": "application/x-npy", "Accept": "application/x-npy"})
    answer = np.load(io.BytesIO(connection.body()))
    connection.close()
    if status != 200:
        raise RuntimeError(f"server on port {port} answered {status}")
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: instance[None]})[0]
    return float(np.abs(answer - expected).max())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(c) for c in args.concurrency.split(",")]
    shape = input_shape(args.model)
    instances = np.random.default_rng(0).normal(size=(args.requests, *shape)).astype(np.float32)
    common = ["--threads", str(args.threads), "--max-batch-size", "64"]
    servers: dict[str, Server | RayServer] = {}
    rounds: list[dict[str, Any]] = []
    try:
        servers["direct"] = Server(args.model, common)
        started = time.perf_counter()
        servers["ray"] = RayServer(args.model, [*common, "--replicas", str(args.replicas),
                                                "--ray-replica-cpus", str(args.threads)])
        ray_start_s = time.perf_counter() - started
        errors = {path: check_answer(server.port, args.model, instances[0])
                  for path, server in servers.items()}
        for round_ in range(args.rounds):
            for clients in levels:
                for path, server in servers.items():
                    result = drive(server.port, instances, clients, "npy")
                    rounds.append({"path": path, "clients": clients, "round": round_, **result})
                    print(f"{path:6} c={clients:3} round {round_ + 1}: {result['throughput_rps']:7.0f} req/s "
                          f"p50 {result['p50_ms']:.2f} ms", file=sys.stderr, flush=True)
    finally:
        for server in servers.values():
            server.stop()
    return summarize(args, shape, levels, rounds, errors, ray_start_s)


def summarize(args: argparse.Namespace, shape: list[int], levels: list[int], rounds: list[dict[str, Any]],
              errors: dict[str, float], ray_start_s: float) -> dict[str, Any]:
    def runs(path: str, clients: int) -> list[dict[str, Any]]:
        return [r for r in rounds if (r["path"], r["clients"]) == (path, clients)]

    rows = [{"path": path, "clients": c, **{k: float(np.median([r[k] for r in runs(path, c)]))
                                           for k in ("throughput_rps", "p50_ms", "p99_ms")}}
            for c in levels for path in ("direct", "ray")]
    ratios = {}
    for c in levels:
        pairs = list(zip(runs("direct", c), runs("ray", c), strict=True))
        ratios[f"throughput_ray_over_direct_c{c}"] = float(np.median(
            [ray["throughput_rps"] / direct["throughput_rps"] for direct, ray in pairs]))
        ratios[f"p50_added_ms_c{c}"] = float(np.median(
            [ray["p50_ms"] - direct["p50_ms"] for direct, ray in pairs]))
    return {"model": str(args.model), "input_shape": shape, "requests": args.requests,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": sys.version.split()[0], "load_average_at_end": os.getloadavg()},
            "settings": {"threads": args.threads, "replicas": args.replicas, "max_batch_size": 64,
                         "rounds": args.rounds, "body": "npy", "client": "raw keep-alive (bench_service)"},
            "max_abs_error_vs_direct_ort": errors, "ray_start_s": ray_start_s,
            "rows": rows, "ratios": ratios, "rounds": rounds}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Model `{report['model']}` input {report['input_shape']}, {report['requests']} `.npy` requests "
             f"per measurement, median of {report['settings']['rounds']} interleaved rounds, "
             f"{report['machine']['cpus']} CPUs, ONNX Runtime threads {report['settings']['threads']}, "
             f"Ray Serve replicas {report['settings']['replicas']}.", "",
             "| path | clients | req/s | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    names = {"direct": "`lc2d serve`", "ray": "`lc2d serve --ray`"}
    for row in report["rows"]:
        lines.append(f"| {names[row['path']]} | {row['clients']} | {row['throughput_rps']:.0f} | "
                     f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} |")
    lines.append("")
    for key, value in report["ratios"].items():
        lines.append(f"- {key}: {value:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = measure(args)
    print(markdown(report))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
