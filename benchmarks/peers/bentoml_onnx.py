"""A BentoML service running an ONNX file with ONNX Runtime, with BentoML's adaptive batching.

``bentoml serve bentoml_onnx:OnnxService`` in the BentoML virtual environment. The API is
batchable: BentoML's dispatcher merges concurrent calls along axis 0 (at most
``LC2D_PEER_MAX_BATCH`` instances) and splits the answer back. The body is BentoML's JSON,
``{"inputs": <nested list>}``; the answer is the first output as a nested list.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
import onnxruntime

MAX_BATCH = int(os.environ.get("LC2D_PEER_MAX_BATCH", "64"))
# BentoML's max_latency_ms is a deadline (requests predicted to miss it are refused with 503),
# not a wait; a generous one keeps every request, as the other servers do.
MAX_LATENCY_MS = 60_000


@bentoml.service(workers=1, traffic={"timeout": 120})
class OnnxService:
    """One CPU session, ONNX Runtime's defaults except the intra-op threads."""

    def __init__(self) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("LC2D_PEER_THREADS", "0"))
        self.session = onnxruntime.InferenceSession(os.environ["LC2D_PEER_MODEL"], options,
                                                    providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def infer(self, inputs: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: inputs.astype(np.float32, copy=False)})[0]
