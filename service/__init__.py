"""The inference service: ONNX Runtime models behind FastAPI, with dynamic batching.

Needs only the base install (onnxruntime, numpy, FastAPI); never imports TensorFlow or Keras.
Reusable pieces: :mod:`service.contract` (input validation), :mod:`service.runtime`
(``load_model``), :mod:`service.errors` (typed errors with HTTP statuses).
"""
