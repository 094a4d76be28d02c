"""Settings of ``lc2d serve``: every field is also the environment variable ``LC2D_<FIELD>``.

Command-line options override environment variables, which override the defaults below. The
options of ``lc2d serve`` are generated from these fields (``lc2d/options.py``): adding a server
option is adding a field here, with a docstring under it (its ``--help`` text).

Example:
    $ LC2D_MAX_BATCH_SIZE=32 LC2D_DEVICE=cpu lc2d serve --model model.onnx
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.providers import Device


class ServeSettings(BaseSettings):
    """Everything the inference service can be told."""

    model_config = SettingsConfigDict(env_prefix="LC2D_", extra="ignore", protected_namespaces=(),
                                      use_attribute_docstrings=True)

    model: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    """ONNX files served under their stem name (version 1). Env: comma-separated paths."""

    model_repository: Path | None = None
    """A directory ``<name>/<version>/model.onnx``; every model found is served."""

    default_model: str | None = None
    """The model ``POST /predict`` uses; defaults to the first ``--model`` or the first name."""

    host: str = "127.0.0.1"
    """Interface to listen on."""

    port: int = Field(default=8000, ge=0, le=65535)
    """TCP port (0 picks a free one)."""

    grpc_port: int = Field(default=8001, ge=0, le=65535)
    """TCP port of the gRPC server (Open Inference Protocol and grpc.health.v1) on the same host;
    0 disables gRPC."""

    device: Device = "auto"
    """``auto``: CUDA when onnxruntime-gpu sees a GPU, else CPU; ``cuda`` and ``tensorrt`` fail
    without their provider (TensorRT falls back to CUDA, then CPU, per operator)."""

    tensorrt_fp16: bool = False
    """With ``--device tensorrt``: let TensorRT build fp16 engines (cached in ``trt_cache/``
    beside each model file)."""

    threads: int | None = Field(default=None, ge=1)
    """ONNX Runtime intra-op threads per model; unset lets ONNX Runtime decide."""

    spin: bool = True
    """Let ONNX Runtime's intra-op threads busy-wait for work while a batch runs (fast hand-offs
    between its operators); they stop as soon as the run ends, leaving the CPU to the server's
    HTTP work. Off, they never spin: a little slower per run (docs/serving.md)."""

    max_batch_size: int = Field(default=64, ge=1)
    """Most instances merged into one run, and most instances accepted in one request."""

    max_delay_ms: float = Field(default=0.0, ge=0)
    """Longest the oldest queued request waits for others; 0 merges whatever is queued."""

    max_queue: int = Field(default=1024, ge=1)
    """Most requests waiting per model; beyond it requests get 503 with Retry-After."""

    request_timeout_ms: float = Field(default=30_000.0, gt=0)
    """Deadline of one inference request, queueing included; past it the answer is 504."""

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Largest request body accepted; larger bodies get 413."""

    max_json_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    """Largest JSON body accepted (the smaller of this and ``max_body_bytes`` applies); larger
    JSON bodies get 413. JSON costs 3-5x the bytes of ``.npy`` for the same tensor and CPU to
    decode, hence its own limit."""

    allow_non_finite: bool = False
    """Accept NaN and infinities in inputs (refused with 422 by default)."""

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the server."""

    @field_validator("model", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _needs_a_model(self) -> ServeSettings:
        if not self.model and self.model_repository is None:
            raise ValueError("expected --model PATH.onnx or --model-repository DIR "
                             "(or LC2D_MODEL / LC2D_MODEL_REPOSITORY), received neither")
        return self
