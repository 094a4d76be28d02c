"""Benchmark of the inference service against a direct ONNX Runtime loop, in the same run.

Starts two ``lc2d serve`` on 127.0.0.1 (batching on: ``--max-batch-size 64``; batching off:
``--max-batch-size 1``), drives them with C concurrent clients (threads with keep-alive
connections, see :class:`RawConnection`), each sending one random instance per request as JSON
or as ``.npy`` to ``/predict``, or as a gRPC ``ModelInfer`` call with a raw tensor (one channel,
so one HTTP/2 connection, per client: :func:`drive_grpc`), and measures throughput and
p50/p99 latency. Each (body, clients) is measured
``--rounds`` times, bodies and batching on and off in turn, so that both sides of a ratio are
measured a few seconds apart: this shared machine's speed drifts by up to 2x over minutes. Rows are
medians over the rounds; the batching speed-up is the median of the per-round ratios. Prints a
Markdown table plus the ratios the issue asks about and writes everything to a JSON file.

The server's overhead at concurrency 1 is measured *paired* (:func:`paired_overhead`): each
instance runs once directly (``session.run`` in this process, a session loaded as the server
loads it) and once through the server, one right after the other, so drifts of the machine hit
both sides alike. The overhead is the server's p50 minus the direct p50, and the median of the
per-pair differences. The unpaired number (a direct loop before the servers start against the
concurrency-1 row) is reported as well.

Usage:
    python benchmarks/bench_service.py --model artifacts/models/digits/1/model.onnx \
        --requests 2000 --json-out docs/bench_service.json
    python benchmarks/bench_service.py --model M.onnx --server-args=--no-spin
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIRED_WARMUP = 10  # pairs of the paired concurrency-1 measurement that are not counted
BODIES = ("json", "npy", "grpc")  # /predict with a JSON or .npy body; gRPC ModelInfer, raw tensor
REFERENCE = "reference"  # --model reference: the reference example, see reference_model()
REFERENCE_PATH = REPO_ROOT / "artifacts" / "bench" / "reference_adaptive.onnx"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help=f"the .onnx model to serve, or `{REFERENCE}`: the reference example "
                             f"(models.seed_example(), seeded weights) exported with --lowering adaptive "
                             f"to {REFERENCE_PATH.relative_to(REPO_ROOT)} (made on first use)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement (default 1000)")
    parser.add_argument("--concurrency", default="1,8,32,64", help="comma-separated client counts")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    parser.add_argument("--max-batch-size", type=int, default=64, help="batch size with batching on")
    parser.add_argument("--max-delay-ms", type=float, default=0.0, help="batch delay with batching on")
    parser.add_argument("--server-args", default="",
                        help="extra `lc2d serve` options for both servers, e.g. --server-args=--no-spin")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="raw",
                        help="HTTP client: raw keep-alive sockets (default) or Python's http.client")
    parser.add_argument("--grpc-client", choices=("aio", "threads"), default="aio",
                        help="gRPC load generator: coroutines of one grpc.aio loop (default; cheaper per "
                             "request) or a thread per client with the blocking API")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measurements of each (body, clients), batching on and off in turn (default 3)")
    parser.add_argument("--paired", type=int, default=400,
                        help=f"instances of the paired concurrency-1 overhead measurement, each run directly "
                             f"and through the server, the first {PAIRED_WARMUP} not counted (default 400)")
    parser.add_argument("--bodies", default=",".join(BODIES),
                        help=f"comma-separated request kinds among {list(BODIES)} (default all)")
    parser.add_argument("--json-out", type=Path, default=Path("docs/bench_service.json"))
    args = parser.parse_args(argv)
    if str(args.model) == REFERENCE:
        args.model = reference_model()
    if not args.model.is_file():
        parser.error(f"--model {args.model} does not exist")
    args.bodies = tuple(args.bodies.split(","))
    if not set(args.bodies) <= set(BODIES) or "npy" not in args.bodies:
        parser.error(f"--bodies: expected names among {list(BODIES)} including npy, received {args.bodies}")
    return args


def reference_model() -> Path:
    """The reference example exported with the adaptive lowering (``lc2d export --lowering
    adaptive``), at :data:`REFERENCE_PATH`; exported in a child process on first use (about a
    minute; TensorFlow never loads in this process, which stays the load generator)."""
    if not REFERENCE_PATH.is_file():
        REFERENCE_PATH.parent.mkdir(parents=True, exist_ok=True)
        partial = REFERENCE_PATH.with_suffix(".partial.onnx")
        code = ("import sys; from pathlib import Path; from benchmarks.bench_peers import "
                "export_reference_example as e; e(Path(sys.argv[1]), policy='adaptive')")
        print(f"exporting the reference example to {REFERENCE_PATH}", file=sys.stderr)
        subprocess.run([sys.executable, "-c", code, str(partial)], cwd=REPO_ROOT, check=True,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        partial.replace(REFERENCE_PATH)  # a run stopped halfway leaves no file that looks whole
    return REFERENCE_PATH


def percentiles(latencies_s: list[float]) -> dict[str, float]:
    values = np.asarray(latencies_s) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def direct_loop(model: Path, instances: np.ndarray, threads: int | None) -> dict[str, Any]:
    """One instance per ``session.run`` call, sequentially: the baseline the server adds to."""
    session = ort_session(model, threads)
    name = session.get_inputs()[0].name
    for instance in instances[:20]:
        session.run(None, {name: instance[None]})
    latencies = []
    started = time.perf_counter()
    for instance in instances:
        tick = time.perf_counter()
        session.run(None, {name: instance[None]})
        latencies.append(time.perf_counter() - tick)
    elapsed = time.perf_counter() - started
    return {"throughput_rps": len(instances) / elapsed, **percentiles(latencies)}


def direct_batched(model: Path, instances: np.ndarray, threads: int | None, batch: int) -> dict[str, Any]:
    """Instances per second of ``session.run`` on whole batches of ``batch``: the ceiling of any
    batching server on this machine, and over :func:`direct_loop`, the most batching can win
    (a batched/unbatched server ratio above it needs an unbatched server slower than the model)."""
    session = ort_session(model, threads)
    name = session.get_inputs()[0].name
    batches = [instances[i:i + batch] for i in range(0, len(instances) - batch + 1, batch)] or [instances]
    session.run(None, {name: batches[0]})
    started = time.perf_counter()
    for rows in batches:
        session.run(None, {name: rows})
    elapsed = time.perf_counter() - started
    return {"batch": len(batches[0]), "throughput_rps": sum(len(rows) for rows in batches) / elapsed}


def ort_session(model: Path, threads: int | None) -> Any:
    """A CPU session loaded exactly as the server loads it (``service.runtime.load_model``)."""
    from service.runtime import load_model

    return load_model(model, "cpu", threads).session


def paired_overhead(port: int, model: Path, instances: np.ndarray, body: str, threads: int | None,
                    client: str = "raw", warmup: int = PAIRED_WARMUP) -> dict[str, Any]:
    """Pairs at one client: each instance runs once directly (``session.run`` in this process, a
    session loaded as the server loads it) and once through the server, one right after the
    other, the order swapped from pair to pair; the first ``warmup`` pairs are not counted. The
    overhead is the server's p50 minus the direct p50, and the median of the per-pair differences.

    Both sides of a pair start in the same state: this process has just waited for an answer
    (or run the other side) and the caches hold the other side's data, and a drift of the
    machine's speed hits the pair's two calls a few milliseconds apart. The previous method
    (blocks of 10 direct calls back to back, then 10 requests) was right on a quiet machine but
    not under contention: a block of direct calls keeps this process's threads busy for the
    whole block, competing for the two cores with the other processes, while the server's
    threads wake up for each request after a wait, which the scheduler favours; with other
    engineers' work on the machine the direct side came out slower than the server (20 against
    12 ms p50, a negative overhead). With four busy processes added on purpose, blocks gave
    -3.3 to +7.7 ms for the same server, pairs 2.1 to 4.4 ms. The direct session's intra-op
    threads stop spinning when a run ends (``session.force_spinning_stop``, as the server's),
    so they take no CPU while the server answers.
    """
    session = ort_session(model, threads)
    name = session.get_inputs()[0].name
    connection = connect(port, body, client)
    direct, served = [], []
    load_before = os.getloadavg()[0]

    def run_direct(instance: np.ndarray) -> float:
        tick = time.perf_counter()
        session.run(None, {name: instance[None]})
        return time.perf_counter() - tick

    def run_served(content: bytes, headers: dict[str, str]) -> float:
        tick = time.perf_counter()
        status = connection.post("/predict", content, headers)
        elapsed = time.perf_counter() - tick
        if status != 200:
            raise RuntimeError(f"server answered {status}")
        return elapsed

    try:
        for i, instance in enumerate(instances):
            content, headers = encode(instance, body)  # outside the timed calls
            if i % 2:
                served_s = run_served(content, headers)
                direct_s = run_direct(instance)
            else:
                direct_s = run_direct(instance)
                served_s = run_served(content, headers)
            if i >= warmup:
                direct.append(direct_s)
                served.append(served_s)
    finally:
        connection.close()
    differences = (np.asarray(served) - np.asarray(direct)) * 1000.0
    result: dict[str, Any] = {"pairs": len(direct), "warmup": warmup, "direct": percentiles(direct),
                              "server": percentiles(served),
                              "load_average": [load_before, os.getloadavg()[0]]}
    result["overhead_p50_ms"] = result["server"]["p50_ms"] - result["direct"]["p50_ms"]
    result["median_pair_overhead_ms"] = float(np.median(differences))
    return result


class RawConnection:
    """One keep-alive HTTP/1.1 connection that writes each request whole and reads the answer by
    its Content-Length: the per-request work of a load generator such as wrk, so that what is
    measured is the server. ``http.client`` parses headers line by line through buffered reads;
    on this machine it added about 0.35 ms per request (``--client http.client`` to compare).
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray(1 << 20)
        self._body: tuple[int, int] | bytes = (0, 0)
        self.answer_bytes = 0  # size of the last whole answer: status line, headers and body

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> int:
        """Sends one POST and reads its whole answer; returns the status code."""
        head = "".join(f"{key}: {value}\r\n" for key, value in headers.items())
        self.sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}Content-Length: "
                          f"{len(content)}\r\n\r\n".encode("latin1") + content)
        got, end = 0, -1
        while end < 0:
            got = self._fill(got, got + 1)
            end = self.buffer.find(b"\r\n\r\n", 0, got)
        lines = bytes(self.buffer[:end]).decode("latin1").split("\r\n")
        fields = dict(line.lower().split(":", 1) for line in lines[1:])
        if "chunked" in fields.get("transfer-encoding", ""):  # e.g. Ray Serve's proxy streams answers
            self.answer_bytes, self._body = self._read_chunked(end + 4, got)
        else:
            total = end + 4 + int(fields["content-length"])
            self._fill(got, total)
            self.answer_bytes, self._body = total, (end + 4, total)
        return int(lines[0].split(" ", 2)[1])

    def body(self) -> bytes:
        """The body of the last answer."""
        return self._body if isinstance(self._body, bytes) else bytes(self.buffer[slice(*self._body)])

    def _fill(self, got: int, need: int) -> int:
        """Receives until the buffer holds at least ``need`` bytes (``got`` so far); returns the count."""
        if need > len(self.buffer):
            self.buffer.extend(bytes(max(need, 2 * len(self.buffer)) - len(self.buffer)))
        while got < need:
            got += self._receive(got, len(self.buffer))
        return got

    def _read_chunked(self, start: int, got: int) -> tuple[int, bytes]:
        """Reads a chunked body that begins at ``start``; returns the answer's size and the body."""
        parts: list[bytes] = []
        pos = start
        while True:
            while (eol := self.buffer.find(b"\r\n", pos, got)) < 0:
                got = self._fill(got, got + 1)
            size = int(bytes(self.buffer[pos:eol]).split(b";")[0], 16)
            pos = eol + 2
            got = self._fill(got, pos + size + 2)  # the chunk and its CRLF (the last: no trailers)
            if size == 0:
                return pos + 2, b"".join(parts)
            parts.append(bytes(self.buffer[pos:pos + size]))
            pos += size + 2

    def _receive(self, start: int, stop: int) -> int:
        with memoryview(self.buffer) as view:
            count = self.sock.recv_into(view[start:stop])
        if count == 0:
            raise ConnectionError("the server closed the connection")
        return count

    def close(self) -> None:
        self.sock.close()


class StdlibConnection:
    """The same interface over ``http.client`` (``--client http.client``)."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> int:
        self.connection.request("POST", path, content, headers)
        answer = self.connection.getresponse()
        answer.read()
        return answer.status

    def close(self) -> None:
        self.connection.close()


class GrpcConnection:
    """One gRPC channel (one HTTP/2 connection) sending already serialised ``ModelInferRequest``
    bytes and receiving the answer's bytes undecoded: like :class:`RawConnection`, the client's
    own work is kept out of what is measured. ``post`` keeps the HTTP clients' interface (the
    path is the RPC's), answering 200 when the call succeeded.
    """

    METHOD = "/inference.GRPCInferenceService/ModelInfer"

    def __init__(self, port: int) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.call = self.channel.unary_unary(self.METHOD)  # no (de)serialisers: bytes in, bytes out
        self.answer = b""

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> int:
        import grpc

        try:
            self.answer = self.call(content, timeout=60)
        except grpc.RpcError as err:
            raise RuntimeError(f"gRPC {err.code()}: {err.details()}") from err
        return 200

    def body(self) -> bytes:
        return bytes(self.answer)

    def close(self) -> None:
        self.channel.close()


CLIENTS: dict[str, type[RawConnection] | type[StdlibConnection]] = {
    "raw": RawConnection, "http.client": StdlibConnection}


def connect(port: int, body: str, client: str) -> RawConnection | StdlibConnection | GrpcConnection:
    """A client for ``body``: gRPC on the server's gRPC port, else the chosen HTTP client."""
    return GrpcConnection(port) if body == "grpc" else CLIENTS[client](port)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float,
               what: str) -> None:
    """Polls ``ready`` until it is true; raises with the process's stderr if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"{what} exited with {process.returncode}: {error[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout_s:.0f} s")


class Server:
    """``lc2d serve`` on a free port of 127.0.0.1, started and ready."""

    def __init__(self, model: Path, extra: list[str]) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        command = [sys.executable, "-m", "lc2d", "serve", "--model", str(model), "--host", "127.0.0.1",
                   "--port", str(self.port), "--grpc-port", str(self.grpc_port), "--log-level", "warning",
                   "--max-queue", "100000", *extra]
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)

        def ready() -> bool:
            url = f"http://127.0.0.1:{self.port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=1) as answer:
                return bool(answer.status == 200)

        wait_until(ready, self.process, 60, "lc2d serve")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def encode(instance: np.ndarray, body: str) -> tuple[bytes, dict[str, str]]:
    if body == "grpc":  # built with the server's own generated messages, wire-compatible with any client's
        from service.grpc import inference_pb2 as pb

        request = pb.ModelInferRequest(model_name=MODEL_NAME[0], raw_input_contents=[instance.tobytes()])
        request.inputs.add(name=INPUT_NAME[0], datatype="FP32", shape=[1, *instance.shape])
        return request.SerializeToString(), {}
    if body == "json":
        return json.dumps({"instances": [instance.tolist()]}).encode(), {"Content-Type": "application/json"}
    buffer = io.BytesIO()
    np.save(buffer, instance[None])
    return buffer.getvalue(), {"Content-Type": "application/x-npy", "Accept": "application/x-npy"}


def drive(port: int, instances: np.ndarray, concurrency: int, body: str,
          client_kind: str = "raw", grpc_client: str = "aio") -> dict[str, Any]:
    """Sends every instance once to ``/predict`` (or ``ModelInfer``), spread over ``concurrency``
    keep-alive clients (gRPC: :func:`drive_grpc` with ``grpc_client="aio"``, else a thread per
    client with a :class:`GrpcConnection`)."""
    payloads = [encode(instance, body) for instance in instances]
    if body == "grpc" and grpc_client == "aio":
        return drive_grpc(port, [content for content, _ in payloads], concurrency)
    return drive_payloads(port, "/predict", payloads, concurrency, "grpc" if body == "grpc" else client_kind)


def drive_grpc(port: int, payloads: list[bytes], concurrency: int) -> dict[str, Any]:
    """Sends serialised ``ModelInferRequest``s with ``concurrency`` gRPC clients, each a coroutine
    with a channel (an HTTP/2 connection) of its own, all in one grpc.aio event loop in this thread.

    The load generator shares the server's two cores: a thread per client with the blocking
    API (:class:`GrpcConnection`) took 0.44-0.53 ms of this process's CPU per request at 64
    clients, the coroutines 0.32-0.36 ms (the HTTP clients: 0.15-0.18 ms), CPU the server then
    has. For one client the blocking API is the cheaper one (an empty call: 0.28 against 0.47-0.52
    ms of client CPU), so the paired measurement keeps :class:`GrpcConnection`. Same interface
    and first-client warm-up as :func:`drive_payloads`.
    """
    import asyncio

    import grpc

    async def client(channel: grpc.aio.Channel, share: list[bytes]) -> list[float]:
        call = channel.unary_unary(GrpcConnection.METHOD)  # bytes in, bytes out
        latencies = []
        for content in share:
            tick = time.perf_counter()
            try:
                await call(content, timeout=60)
            except grpc.aio.AioRpcError as err:
                raise RuntimeError(f"gRPC {err.code()}: {err.details()}") from err
            latencies.append(time.perf_counter() - tick)
        return latencies

    async def run() -> tuple[list[float], float]:
        shares = [payloads[i::concurrency] for i in range(concurrency)]
        channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in shares]
        try:
            # connected before the clock starts: a channel's connection and HTTP/2 handshake
            # take milliseconds (64 of them were most of a 400-request measurement), an HTTP
            # client's TCP connection about 0.1 ms
            await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in channels)), 60)
            await client(channels[0], shares[0][:10])  # warm-up
            started = time.perf_counter()
            pairs = zip(channels, shares, strict=True)
            parts = await asyncio.gather(*(client(channel, share) for channel, share in pairs))
            return [t for part in parts for t in part], time.perf_counter() - started
        finally:
            await asyncio.gather(*(channel.close() for channel in channels))

    latencies, elapsed = asyncio.run(run())
    return {"throughput_rps": len(latencies) / elapsed, **percentiles(latencies)}


def drive_payloads(port: int, path: str, payloads: list[tuple[bytes, dict[str, str]]], concurrency: int,
                   client_kind: str = "raw") -> dict[str, Any]:
    """POSTs every payload once to ``path``, spread over ``concurrency`` keep-alive clients.

    Returns throughput (requests per second over the whole run) and p50/p99 latency; any answer
    but 200 raises. The first client sends 10 untimed requests first (connections, warm caches).
    """
    shares = [payloads[i::concurrency] for i in range(concurrency)]

    def client(share: list[tuple[bytes, dict[str, str]]]) -> list[float]:
        connection = GrpcConnection(port) if client_kind == "grpc" else CLIENTS[client_kind](port)
        latencies = []
        for content, headers in share:
            tick = time.perf_counter()
            status = connection.post(path, content, headers)
            latencies.append(time.perf_counter() - tick)
            if status != 200:
                raise RuntimeError(f"server answered {status} on {path}")
        connection.close()
        return latencies

    client(shares[0][:10])  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = [t for part in pool.map(client, shares) for t in part]
    elapsed = time.perf_counter() - started
    return {"throughput_rps": len(latencies) / elapsed, **percentiles(latencies)}


MODEL_NAME = ["model"]  # the served name and input name of --model, set by main() for encode()
INPUT_NAME = ["input"]


def input_shape(model: Path) -> list[int]:
    """One instance's shape, as the server's input contract reads it (free dimensions: 1)."""
    from service.runtime import load_model

    contract = load_model(model, "cpu").contract
    MODEL_NAME[0], INPUT_NAME[0] = model.stem, contract.input_name
    return [d or 1 for d in contract.instance_shape]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",")]
    shape = input_shape(args.model)
    instances = np.random.default_rng(0).normal(size=(args.requests, *shape)).astype(np.float32)
    threads = ["--threads", str(args.threads)] if args.threads else []
    modes = {"on": ["--max-batch-size", str(args.max_batch_size), "--max-delay-ms", str(args.max_delay_ms)],
             "off": ["--max-batch-size", "1"]}
    load_start = os.getloadavg()
    direct = direct_loop(args.model, instances, args.threads)
    direct["batched"] = direct_batched(args.model, instances, args.threads, args.max_batch_size)
    measured: list[dict[str, Any]] = []
    paired: dict[str, Any] = {}
    servers: dict[str, Server] = {}
    try:  # both servers at once: each round measures batching on and off a few seconds apart
        for mode, extra in modes.items():
            servers[mode] = Server(args.model, extra + threads + args.server_args.split())
        for body in args.bodies:
            port = servers["on"].grpc_port if body == "grpc" else servers["on"].port
            paired[body] = paired_overhead(port, args.model, instances[:args.paired],
                                           body, args.threads, args.client)
            print(f"paired c=1 {body:4}: server p50 {paired[body]['server']['p50_ms']:.2f} ms, "
                  f"direct p50 {paired[body]['direct']['p50_ms']:.2f} ms, "
                  f"overhead {paired[body]['overhead_p50_ms']:.2f} ms "
                  f"(median per pair {paired[body]['median_pair_overhead_ms']:.2f}; "
                  f"load average {paired[body]['load_average'][0]:.1f})", file=sys.stderr)
        # bodies and batching modes alternate inside each round: every ratio (on/off, gRPC/.npy)
        # compares measurements seconds apart
        for concurrency in levels:
            for round_ in range(args.rounds):
                for body in args.bodies:
                    for mode, server in servers.items():
                        port = server.grpc_port if body == "grpc" else server.port
                        result = drive(port, instances, concurrency, body, args.client, args.grpc_client)
                        measured.append({"batching": mode, "body": body, "concurrency": concurrency,
                                         "round": round_, "load_average": os.getloadavg()[0], **result})
                        print(f"batching {mode:3} {body:4} c={concurrency:3} round {round_ + 1}: "
                              f"{result['throughput_rps']:8.0f} req/s "
                              f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms", file=sys.stderr)
    finally:
        for server in servers.values():
            server.stop()
    report = summarize(args, shape, direct, measured, levels, paired)
    report["machine"]["load_average"] = {"start": list(load_start), "end": list(os.getloadavg())}
    print(markdown(report))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def summarize(args: argparse.Namespace, shape: list[int], direct: dict[str, Any],
              measured: list[dict[str, Any]], levels: list[int], paired: dict[str, Any]) -> dict[str, Any]:
    """Rows are medians over the rounds; the speed-up is the median of the per-round ratios."""
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in measured:
        runs.setdefault((r["batching"], r["body"], r["concurrency"]), []).append(r)
    rows = [{"batching": mode, "body": body, "concurrency": c, "rounds": len(runs[mode, body, c]),
             **{k: float(np.median([r[k] for r in runs[mode, body, c]]))
                for k in ("throughput_rps", "p50_ms", "p99_ms")}}
            for body in args.bodies for mode in ("on", "off") for c in levels]

    def find(mode: str, body: str, concurrency: int) -> dict[str, Any]:
        key = (mode, body, concurrency)
        return next(r for r in rows if (r["batching"], r["body"], r["concurrency"]) == key)

    top = max(levels)
    ratios: dict[str, float] = {}
    ratio_rounds: dict[str, list[float]] = {}  # each throughput ratio's value in every round

    def throughput_ratio(name: str, over: tuple[str, str], under: tuple[str, str]) -> None:
        per_round = [a["throughput_rps"] / b["throughput_rps"]  # seconds apart in each round
                     for a, b in zip(runs[(*over, top)], runs[(*under, top)], strict=True)]
        ratios[name] = float(np.median(per_round))
        ratio_rounds[name] = per_round

    for body in args.bodies:
        throughput_ratio(f"batching_speedup_c{top}_{body}", ("on", body), ("off", body))
    if "grpc" in args.bodies:
        throughput_ratio(f"grpc_over_npy_throughput_c{top}_batching", ("on", "grpc"), ("on", "npy"))
    for body, result in paired.items():
        ratios[f"server_overhead_p50_ms_c1_{body}"] = result["overhead_p50_ms"]
        ratios[f"server_overhead_median_pair_ms_c1_{body}"] = result["median_pair_overhead_ms"]
    ratios["direct_batching_speedup"] = direct["batched"]["throughput_rps"] / direct["throughput_rps"]
    if 1 in levels:
        for body in args.bodies:
            ratios[f"unpaired_overhead_p50_ms_c1_{body}"] = find("on", body, 1)["p50_ms"] - direct["p50_ms"]
    return {"model": str(args.model), "input_shape": shape, "requests": args.requests,
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "python": sys.version.split()[0]},
            "settings": {"max_batch_size": args.max_batch_size, "max_delay_ms": args.max_delay_ms,
                         "threads": args.threads, "server_args": args.server_args,
                         "client": args.client, "grpc_client": args.grpc_client, "rounds": args.rounds,
                         "bodies": list(args.bodies)},
            "direct_onnxruntime": direct, "server": rows, "rounds": measured, "paired_c1": paired,
            "ratios": ratios, "ratio_rounds": ratio_rounds}


def markdown(report: dict[str, Any]) -> str:
    direct = report["direct_onnxruntime"]
    load = report["machine"].get("load_average", {})
    lines = [f"Model `{report['model']}` input {report['input_shape']}, {report['requests']} requests each, "
             f"{report['machine']['cpus']} CPUs, load average (1, 5, 15 min) at the start "
             f"{load.get('start')} and the end {load.get('end')}.", "",
             "| batching | body | clients | req/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|---:|",
             f"| direct ORT loop | - | 1 | {direct['throughput_rps']:.0f} | {direct['p50_ms']:.3f} | "
             f"{direct['p99_ms']:.3f} |",
             f"| direct ORT, batches of {direct['batched']['batch']} | - | - | "
             f"{direct['batched']['throughput_rps']:.0f} | - | - |"]
    for row in report["server"]:
        lines.append(f"| {row['batching']} | {row['body']} | {row['concurrency']} | "
                     f"{row['throughput_rps']:.0f} | "
                     f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} |")
    if report["paired_c1"]:
        lines += ["", "Paired at concurrency 1 (batching on; each instance run directly and through the "
                  "server in turn), ms:", "",
                  "| body | direct p50 | server p50 | overhead (difference of p50s) | median of per-pair "
                  "differences |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {body} | {r['direct']['p50_ms']:.3f} | {r['server']['p50_ms']:.3f} | "
                  f"{r['overhead_p50_ms']:.3f} | {r['median_pair_overhead_ms']:.3f} |"
                  for body, r in report["paired_c1"].items()]
    lines += ["", "| ratio | value (median of rounds) | range over rounds |", "|---|---:|---:|"]
    for name, value in report["ratios"].items():
        rounds = report["ratio_rounds"].get(name)
        spread = f"{min(rounds):.2f}–{max(rounds):.2f}" if rounds else "-"
        lines.append(f"| {name} | {value:.2f} | {spread} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
