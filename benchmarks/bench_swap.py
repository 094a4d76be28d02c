"""Replacing a model version under load: requests served, failures, latency, memory, first request.

Writes a repository with version 1 of a random classifier (``--features`` inputs, ``--classes``
outputs: ``features x classes`` float32 weights, 50 MB by default, so that a version's memory
shows in the server's RSS), starts ``lc2d serve --model-control-mode explicit`` (or ``poll``)
on 127.0.0.1 and drives it with ``--clients`` keep-alive clients, each sending one instance per
request as ``.npy`` to ``/v1/models/swap:predict``. After ``--steady-secs`` of load, version 2
(different random weights) is moved into the repository and loaded (``load_model``, or the
next poll), version 1's directory is removed, and the load goes on for ``--steady-secs`` more.

Every answer is checked against direct ONNX Runtime runs of both files: it must match the
version its ``X-Model-Version`` header names and not the other. Reported: requests served and
failed, latency p50/p99 in steady state, during the swap (from the moment version 2 is placed
until version 1 is unloaded) and after; the server's RSS with one version, at its peak during
the swap and after version 1 is unloaded; and the first request after a reload against the
steady median (one client, ``--reloads`` reloads), and the same in process without HTTP, with and
without warmup. Prints a table and writes a JSON file.

Usage:
    python benchmarks/bench_swap.py --json-out docs/bench_swap.json
    python benchmarks/bench_swap.py --mode poll --clients 16 --steady-secs 5
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
NAME = "swap"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("explicit", "poll"), default="explicit")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--steady-secs", type=float, default=10.0, help="load before and after the swap")
    parser.add_argument("--features", type=int, default=12288, help="inputs per instance (64x64x3)")
    parser.add_argument("--classes", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--reloads", type=int, default=5, help="reloads for the first-request measurement")
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args(argv)


# --- models -----------------------------------------------------------------------------------------


def write_model(path: Path, features: int, classes: int, seed: int) -> None:
    """A softmax classifier ``[N, features] -> [N, classes]`` with random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 0.05, (features, classes)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "kernel"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        "swap", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(kernel, "kernel")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def direct_outputs(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": inputs[i:i + 1]})[0] for i in range(len(inputs))])


# --- server -------------------------------------------------------------------------------------------


class Server:
    """``lc2d serve`` on a free port, and its resident memory."""

    def __init__(self, root: Path, mode: str, threads: int) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "lc2d", "serve", "--model-repository", str(root),
                   "--host", "127.0.0.1", "--port", str(self.port), "--model-control-mode", mode,
                   "--repository-poll-secs", "0.5",
                   "--threads", str(threads), "--max-batch-size", "64", "--log-level", "warning"]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.get("/v2/health/ready") is not None:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, path: str, body: bytes = b"") -> Any:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read())

    def index(self) -> dict[str, str]:
        return {f"{row['name']}/{row.get('version', '')}": row["state"]
                for row in self.post("/v2/repository/index")}

    def loads(self) -> float:
        """``lc2d_model_loads_total`` of the benchmark's model (versions loaded and warmed up)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(f'lc2d_model_loads_total{{model="{NAME}"}}'):
                    return float(line.split()[-1])
        return 0.0

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


# --- load ---------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What the clients saw: (start, end, version) per answer, failures, answers of the wrong version."""

    answers: list[tuple[float, float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    mismatched: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def client(port: int, index: int, inputs: np.ndarray, references: dict[str, np.ndarray], load: Load,
           stop: threading.Event) -> None:
    bodies = [npy(inputs[i:i + 1]) for i in range(len(inputs))]
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    k = index
    while not stop.is_set():
        row = k % len(inputs)
        k += 1
        started = time.monotonic()
        try:
            connection.request("POST", f"/v1/models/{NAME}:predict", bodies[row], headers)
            answer = connection.getresponse()
            payload = answer.read()
        except OSError as err:
            with load.lock:
                load.failures.append(repr(err))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            continue
        ended = time.monotonic()
        version = answer.getheader("X-Model-Version") or "?"
        with load.lock:
            if answer.status != 200:
                load.failures.append(f"{answer.status} {payload[:120]!r}")
                continue
            values = np.load(io.BytesIO(payload))[0]
            right = version in references and np.allclose(values, references[version][row],
                                                          rtol=1e-4, atol=1e-6)
            wrong = any(np.allclose(values, ref[row], rtol=1e-4, atol=1e-6)
                        for other, ref in references.items() if other != version)
            load.mismatched += int(not right or wrong)
            load.answers.append((started, ended, version))
    connection.close()


def latency_ms(answers: list[tuple[float, float, str]]) -> dict[str, float]:
    if not answers:
        return {"requests": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    seconds = np.array([end - start for start, end, _ in answers])
    return {"requests": len(answers), "p50_ms": float(np.percentile(seconds, 50) * 1e3),
            "p99_ms": float(np.percentile(seconds, 99) * 1e3)}


def first_request_ratio(server: Server, root: Path, args: argparse.Namespace,
                        inputs: np.ndarray) -> dict[str, Any]:
    """One client: after each reload of version 2 (new weights), the first request, then 30 more."""
    body = npy(inputs[:1])
    headers = {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)

    def reconnect() -> None:
        """A fresh keep-alive connection that has carried one request: a new connection's first
        exchange can wait on delayed ACKs, which is TCP's cost, not the model's."""
        connection.close()
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.request("GET", "/v2/health/live")
        connection.getresponse().read()

    def timed() -> float:
        started = time.perf_counter()
        connection.request("POST", f"/v1/models/{NAME}:predict", body, headers)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
        return time.perf_counter() - started

    firsts: list[float] = []
    steady: list[float] = []
    server_first: list[float] = []  # the server's own time for the first request (its statistics)
    server_steady: list[float] = []  # and its mean over the steady ones
    for reload in range(args.reloads):
        loads = server.loads()
        write_model(root / NAME / "2" / "model.onnx", args.features, args.classes, seed=100 + reload)
        if args.mode == "explicit":
            server.post(f"/v2/repository/models/{NAME}/load")
        deadline = time.monotonic() + 120
        while server.loads() == loads or server.index().get(f"{NAME}/2") != "READY":  # poll: the next read
            assert time.monotonic() < deadline, "the changed file was not reloaded"
            time.sleep(0.05)
        reconnect()  # the load request took longer than the server's keep-alive
        firsts.append(timed())
        server_first.append(server_seconds(server))
        steady.extend(timed() for _ in range(30))
        server_steady.append((server_seconds(server) * 31 - server_first[-1]) / 30)
    connection.close()
    p50 = float(np.median(steady))
    return {"first_ms": [round(f * 1e3, 2) for f in firsts],
            "first_median_ms": float(np.median(firsts)) * 1e3,
            "steady_p50_ms": p50 * 1e3, "ratio": float(np.median(firsts)) / p50,
            "server_first_ms": [round(f * 1e3, 2) for f in server_first],
            "server_steady_mean_ms": [round(f * 1e3, 2) for f in server_steady],
            "server_ratio": float(np.median(server_first) / np.median(server_steady))}


def first_request_in_process(args: argparse.Namespace, inputs: np.ndarray, warmup: bool) -> dict[str, Any]:
    """The same measurement without HTTP: the model registry in this process, reloads through
    ``ModelRegistry.load``, requests through a lease and the version's batcher. ``warmup=False``
    loads with ``{"warmup": []}`` to show what the warmup saves."""
    from service.metrics import ServiceMetrics
    from service.registry import ModelRegistry
    from service.repository import ModelCatalog
    from service.settings import ServeSettings

    root = Path(tempfile.mkdtemp(prefix="bench_swap_inproc_")) / "models"
    path = root / NAME / "1" / "model.onnx"
    write_model(path, args.features, args.classes, seed=1)
    settings = ServeSettings(model_repository=root, device="cpu", threads=args.threads,
                             model_control_mode="explicit")
    registry = ModelRegistry(ModelCatalog(repository=root), settings, ServiceMetrics(), mode="explicit")
    registry.load_all()
    batch = inputs[:1]

    async def one() -> float:
        started = time.perf_counter()
        async with registry.lease(NAME) as version:
            assert version.batcher is not None
            await version.batcher.submit(batch)
        return time.perf_counter() - started

    async def measure() -> list[float]:
        await registry.start()
        ratios = []
        for reload in range(args.reloads):
            write_model(path, args.features, args.classes, seed=200 + reload)
            await registry.load(NAME, None if warmup else {"warmup": []})
            first = await one()
            ratios.append(first / float(np.median([await one() for _ in range(30)])))
        await registry.stop()
        return ratios

    try:
        ratios = asyncio.run(measure())
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)
    return {"ratios": [round(r, 2) for r in ratios], "median_ratio": float(np.median(ratios))}


def server_seconds(server: Server) -> float:
    """Mean time the server spent per successful request of the current version (its statistics,
    which start at zero when a version becomes ready)."""
    stats = server.get(f"/v2/models/{NAME}/stats")["model_stats"]
    success = next(s for s in stats if s["version"] == "2")["inference_stats"]["success"]
    return float(success["ns"]) / 1e9 / max(1, int(success["count"]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench_swap_"))
    root = workdir / "models"
    write_model(root / NAME / "1" / "model.onnx", args.features, args.classes, seed=1)
    staged = workdir / "staged" / "model.onnx"
    write_model(staged, args.features, args.classes, seed=2)
    inputs = np.random.default_rng(0).random((16, args.features), dtype=np.float32)
    references = {"1": direct_outputs(root / NAME / "1" / "model.onnx", inputs),
                  "2": direct_outputs(staged, inputs)}
    server = Server(root, args.mode, args.threads)
    try:
        load, stop = Load(), threading.Event()
        threads = [threading.Thread(target=client, args=(server.port, i, inputs, references, load, stop),
                                    daemon=True) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(args.steady_secs)
        rss_one = server.rss_mb()
        swap_began = time.monotonic()
        (root / NAME / "2").mkdir()
        os.rename(staged, root / NAME / "2" / "model.onnx")
        peak = [rss_one]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                peak.append(server.rss_mb())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        if args.mode == "explicit":
            server.post(f"/v2/repository/models/{NAME}/load")
        deadline = time.monotonic() + 120
        while server.index() != {f"{NAME}/1": "UNLOADED", f"{NAME}/2": "READY"}:
            assert time.monotonic() < deadline, server.index()
            time.sleep(0.05)
        swap_ended = time.monotonic()
        shutil.rmtree(root / NAME / "1")
        sampling.set()
        sampler.join()
        time.sleep(args.steady_secs)
        rss_after = server.rss_mb()
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        first = first_request_ratio(server, root, args, inputs)
        in_process = {"warm": first_request_in_process(args, inputs, warmup=True),
                      "cold (no warmup)": first_request_in_process(args, inputs, warmup=False)}
        stats = server.get(f"/v2/models/{NAME}/stats")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    phases = {
        "steady (version 1)": [a for a in load.answers if a[0] < swap_began],
        "during the swap": [a for a in load.answers if swap_began <= a[0] < swap_ended],
        "after (version 2)": [a for a in load.answers if a[0] >= swap_ended],
    }
    versions = {v: sum(1 for a in load.answers if a[2] == v) for v in ("1", "2")}
    return {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg(), "python": platform.python_version()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "model_mb": args.features * args.classes * 4 / 2**20,
        "requests": len(load.answers), "failures": len(load.failures), "failure_samples": load.failures[:5],
        "mismatched_answers": load.mismatched, "answers_by_version": versions,
        "swap_seconds": swap_ended - swap_began,
        "phases": {name: latency_ms(answers) for name, answers in phases.items()},
        "rss_mb": {"one version": rss_one, "peak during the swap": max(peak), "after unloading v1": rss_after,
                   "after / one version": rss_after / rss_one},
        "first_request_after_ready": first,
        "first_request_in_process": in_process,
        "server_stats_v2": stats["model_stats"],
    }


def print_report(result: dict[str, Any]) -> None:
    machine = result["machine"]
    print(f"mode {result['args']['mode']}, {result['args']['clients']} clients, model "
          f"{result['model_mb']:.0f} MB, load average at the end {machine['load_average'][0]:.1f} on "
          f"{machine['cpus']} CPUs")
    print(f"requests {result['requests']}, failures {result['failures']}, answers not matching their version "
          f"{result['mismatched_answers']}, by version {result['answers_by_version']}, swap took "
          f"{result['swap_seconds']:.2f} s")
    print("| phase | requests | p50 ms | p99 ms |\n|---|---|---|---|")
    for name, row in result["phases"].items():
        print(f"| {name} | {row['requests']} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
    rss = result["rss_mb"]
    print(f"RSS: one version {rss['one version']:.0f} MB, peak during the swap "
          f"{rss['peak during the swap']:.0f} MB, after unloading v1 {rss['after unloading v1']:.0f} MB "
          f"({rss['after / one version']:.2f}x)")
    first = result["first_request_after_ready"]
    print(f"first request after a reload: median {first['first_median_ms']:.1f} ms over {first['first_ms']} "
          f"vs steady p50 {first['steady_p50_ms']:.1f} ms ({first['ratio']:.2f}x); in the server: first "
          f"{first['server_first_ms']} ms vs steady means {first['server_steady_mean_ms']} ms "
          f"({first['server_ratio']:.2f}x)")
    for kind, row in result["first_request_in_process"].items():
        print(f"in process, {kind}: first request / steady median {row['ratios']} "
              f"(median {row['median_ratio']:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_report(result)
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failures"] == 0 and result["mismatched_answers"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
