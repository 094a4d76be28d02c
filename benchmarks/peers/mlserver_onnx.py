"""A minimal ONNX Runtime runtime for MLServer: one CPU session, the first input and every output.

MLServer loads this class by name from ``model-settings.json`` (``implementation``:
``mlserver_onnx.OnnxRuntimeModel``); its adaptive batching (``max_batch_size``,
``max_batch_time`` in the same file) merges concurrent requests along the first axis before
:meth:`predict` sees them and splits the answer back. Runs in the MLServer virtual environment.
"""

from __future__ import annotations

import os

import onnxruntime
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    """Serves ``parameters.uri`` with ONNX Runtime's defaults except the intra-op threads."""

    async def load(self) -> bool:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("LC2D_PEER_THREADS", "0"))
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self._session = onnxruntime.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        batch = NumpyCodec.decode_input(payload.inputs[0])
        results = self._session.run(self._outputs, {self._input: batch})
        outputs = [NumpyCodec.encode_output(name, value)
                   for name, value in zip(self._outputs, results, strict=True)]
        return InferenceResponse(model_name=self.name, outputs=outputs)
