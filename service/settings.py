"""Settings of ``lc2d serve``: every field is also the environment variable ``LC2D_<FIELD>``.

Command-line options override environment variables, which override the defaults below. The
options of ``lc2d serve`` are generated from these fields (``lc2d/options.py``): adding a server
option is adding a field here, with a docstring under it (its ``--help`` text).

Example:
    $ LC2D_MAX_BATCH_SIZE=32 LC2D_DEVICE=cpu lc2d serve --model model.onnx
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.model_config import ServingOptions


class ServeSettings(BaseSettings, ServingOptions):
    """Everything the inference service can be told.

    The :class:`~service.model_config.ServingOptions` fields (device, threads, spin, instances,
    batching, input limits) are the defaults of every model; a model's ``config.json`` overrides
    them for that model.
    """

    model_config = SettingsConfigDict(env_prefix="LC2D_", extra="ignore", protected_namespaces=(),
                                      frozen=False, use_attribute_docstrings=True)

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

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Largest request body accepted; larger bodies get 413."""

    gzip_min_bytes: int = Field(default=64 * 1024, ge=0)
    """Answers at least this large are gzip-compressed for clients that send
    ``Accept-Encoding: gzip``; 0 compresses none."""

    max_json_bytes: int = Field(default=16 * 1024 * 1024, ge=1)
    """Largest JSON body accepted (the smaller of this and ``max_body_bytes`` applies); larger
    JSON bodies get 413. JSON costs 3-5x the bytes of ``.npy`` for the same tensor and CPU to
    decode, hence its own limit."""

    model_control_mode: Literal["none", "poll", "explicit"] = "none"
    """How served models change while running (Triton's names): ``none``, the repository is read at
    start-up; ``poll``, it is read again every ``repository_poll_secs``; ``explicit``,
    ``POST /v2/repository/models/{name}/load`` and ``/unload`` change models. SIGHUP rereads it in
    every mode (in ``explicit``, for the loaded models)."""

    repository_poll_secs: float = Field(default=15.0, gt=0)
    """Seconds between two reads of the repository in ``poll`` mode."""

    header_timeout_s: float = Field(default=10.0, gt=0)
    """Seconds a client has to send a request's headers (from its first byte, or from connecting);
    past them it gets 408 and the connection is closed."""

    body_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds a client has to send a request's body once its headers arrived; past them 408."""

    keep_alive_timeout_s: float = Field(default=5.0, gt=0)
    """Seconds an idle keep-alive connection stays open waiting for the next request."""

    max_connections: int = Field(default=1000, ge=1)
    """Most open connections (lowered to the file limit minus 64). Beyond it the oldest idle or
    header-sending connection is closed to make room, else the new one gets 503 and is closed."""

    graceful_timeout_s: float | None = Field(default=None, gt=0)
    """Longest a stopping server (SIGTERM) waits for requests in flight before closing their
    connections; unset: one request deadline (``request_timeout_ms``)."""

    api_keys: Path | None = None
    """A file of API keys, one per line: every request then needs ``Authorization: Bearer <key>``
    (health probes never do). Env ``LC2D_API_KEYS`` names the file."""

    public_metrics: bool = False
    """With ``api_keys``: ``/metrics`` needs no key (for a Prometheus without credentials)."""

    public_docs: bool = False
    """With ``api_keys``: ``/docs`` and ``/openapi.json`` need no key."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins browsers may call from (CORS), e.g. ``https://app.example``; none by default.
    Env: comma-separated."""

    docs: bool = True
    """Serve ``/docs`` (Swagger UI from a Python package: works offline) and ``/openapi.json``."""

    ssl_certfile: Path | None = None
    """PEM certificate (chain) to serve HTTPS; needs ``ssl_keyfile``."""

    ssl_keyfile: Path | None = None
    """PEM private key of ``ssl_certfile``."""

    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the server."""

    ray: bool = False
    """Run as a Ray Serve application (``service.ray_serve``): the same app in every replica,
    Ray Serve's proxy on ``host:port`` in front of them. Needs ``lc2d-serve[ray]``."""

    ray_address: str | None = None
    """The Ray cluster to join with ``ray`` (``host:port`` or ``ray://host:port``); unset starts a
    local Ray instance."""

    replicas: int | None = Field(default=None, ge=1)
    """Fixed number of Ray Serve replicas (default 1); excludes ``autoscale``."""

    autoscale: str | None = None
    """``MIN:MAX`` Ray Serve replicas, scaled on ongoing requests per replica (see
    ``target_ongoing_requests``); excludes ``replicas``."""

    target_ongoing_requests: float = Field(default=32.0, gt=0)
    """With ``autoscale``: the ongoing requests per replica Ray Serve scales towards. Well above 1,
    so that each replica's batcher has requests to merge."""

    ray_replica_cpus: float = Field(default=1.0, ge=0)
    """Logical CPUs Ray reserves for each replica (set ``threads`` to match)."""

    ship_models: bool = False
    """With ``ray``: read the model files once here and send them to the replicas through Ray's
    object store (for nodes that cannot read the paths); the driver must keep running."""

    @property
    def drain_timeout_s(self) -> int:
        """Seconds a stopping server waits for queued requests: ``graceful_timeout_s``, else one
        request deadline; at least 1."""
        if self.graceful_timeout_s is not None:
            return max(1, math.ceil(self.graceful_timeout_s))
        return max(1, int(self.request_timeout_ms // 1000))

    @property
    def autoscale_range(self) -> tuple[int, int] | None:
        """``autoscale`` as ``(min, max)`` replicas, or None."""
        if self.autoscale is None:
            return None
        low, high = self.autoscale.split(":")
        return int(low), int(high)

    @field_validator("autoscale")
    @classmethod
    def _check_autoscale(cls, value: str | None) -> str | None:
        if value is None:
            return value
        low, sep, high = value.partition(":")
        if not sep or not low.isdigit() or not high.isdigit() or int(high) < int(low) or int(high) < 1:
            raise ValueError(f"expected MIN:MAX replicas with 0 <= MIN <= MAX and MAX >= 1, "
                             f"received {value!r}")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("expected --ssl-certfile and --ssl-keyfile together, received only one")
        if self.replicas is not None and self.autoscale is not None:
            raise ValueError(f"expected --replicas or --autoscale, received both (replicas={self.replicas}, "
                             f"autoscale={self.autoscale!r})")
        return self
