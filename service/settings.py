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

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    """Largest request body accepted; larger bodies get 413."""

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
