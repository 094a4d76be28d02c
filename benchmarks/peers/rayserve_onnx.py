"""Ray Serve deployment of an ONNX file with ``@serve.batch``; run as a script in Ray's environment.

Starts a local Ray instance (the cores of this machine, no dashboard), Serve's HTTP proxy on
127.0.0.1:``LC2D_PEER_PORT`` and one replica; blocks until SIGTERM. The route ``/infer`` takes
and answers Open Inference Protocol JSON (one input; every output, FP32).
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import onnxruntime
import ray
from ray import serve
from starlette.requests import Request

MAX_BATCH = int(os.environ.get("LC2D_PEER_MAX_BATCH", "64"))
MAX_DELAY_S = float(os.environ.get("LC2D_PEER_MAX_DELAY_MS", "0")) / 1000.0


@serve.deployment(num_replicas=1, max_ongoing_requests=1024, ray_actor_options={"num_cpus": 0})
class OnnxDeployment:
    """One CPU session, ONNX Runtime's defaults except the intra-op threads."""

    def __init__(self, model: str, threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=MAX_DELAY_S)
    async def run(self, instances: list[np.ndarray]) -> list[list[np.ndarray]]:
        sizes = [len(x) for x in instances]
        results = self.session.run(self.outputs, {self.input: np.concatenate(instances)})
        bounds = np.cumsum([0, *sizes])
        return [[r[a:b] for r in results] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    async def __call__(self, request: Request) -> dict:
        tensor = (await request.json())["inputs"][0]
        batch = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        results = await self.run(batch)
        return {"model_name": "model", "outputs": [
            {"name": name, "shape": list(r.shape), "datatype": "FP32", "data": r.ravel().tolist()}
            for name, r in zip(self.outputs, results, strict=True)]}


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(os.environ["LC2D_PEER_PORT"])})
    # serve.deployment returns a Deployment object; mypy sees the decorated class
    app = OnnxDeployment.bind(os.environ["LC2D_PEER_MODEL"],  # type: ignore[attr-defined]
                              int(os.environ.get("LC2D_PEER_THREADS", "0")))
    serve.run(app, route_prefix="/infer")
    stop.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
