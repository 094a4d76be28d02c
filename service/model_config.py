"""Per-model configuration: ``DIR/<name>/config.json``, with the server's flags as defaults.

:class:`ServingOptions` are the settings a model version is served with (device, sessions,
batching, input limits). ``ServeSettings`` inherits them, so each ``lc2d serve`` flag is the
default of the same key in every model's :class:`ModelConfig`; a ``config.json`` overrides
them for its model and adds the version policy, the default version and the warmup batches.
The contract (:class:`~service.contract.InputContract`) stays what the ONNX file says; the
limits it is checked against come from here (:attr:`ModelConfig.limits`), and the batcher
and the metadata read the same object.

Example:
    >>> config = ModelConfig.for_model(settings, {"max_batch_size": 16, "version_policy": {"all": True}})
    >>> config.version_policy.select(["1", "2", "3"])
    ['1', '2', '3']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    model_validator,
)

from service.contract import InputLimits
from service.errors import InvalidModelConfigError
from service.providers import Device

CONFIG_FILENAME = "config.json"
LABEL_PATTERN = r"^[A-Za-z0-9_-]+$"
"""What a version label may be: it becomes a path segment of ``/v1/models/{name}/labels/{label}``."""
VersionLabel = Annotated[str, StringConstraints(pattern=LABEL_PATTERN)]


MAX_BATCH_SIZE = 65_536
"""Upper bound of ``max_batch_size``. Warmup allocates and runs a batch of ``max_batch_size``
instances, so a load request asking for 2**70 would otherwise exhaust the server's memory. The
bounds on ``threads``, ``instances``, ``max_delay_ms`` and ``warmup`` have the same purpose: a
load request (or a config.json) cannot make the server start a million sessions or threads, or
wait forever before it is ready."""


class ServingOptions(BaseModel):
    """How one model version is served; the server's flags are the defaults of every model."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    device: Device = "auto"
    """``auto``: CUDA when onnxruntime-gpu sees a GPU, else CPU; ``cuda`` and ``tensorrt`` fail
    without their provider (TensorRT falls back to CUDA, then CPU, per operator)."""

    tensorrt_fp16: bool = False
    """With ``--device tensorrt``: let TensorRT build fp16 engines (cached in ``trt_cache/``
    beside each model file)."""

    threads: int | None = Field(default=None, ge=1, le=256)
    """ONNX Runtime intra-op threads per session (at most 256); unset lets ONNX Runtime decide."""

    spin: bool = True
    """Let ONNX Runtime's intra-op threads busy-wait for work while a batch runs (fast hand-offs
    between its operators); they stop as soon as the run ends, leaving the CPU to the server's
    HTTP work. Off, they never spin: a little slower per run (docs/serving.md)."""

    instances: int = Field(default=1, ge=1, le=64)
    """ONNX Runtime sessions per model version (at most 64); they take batches from the same queue."""

    max_batch_size: int = Field(default=64, ge=1, le=MAX_BATCH_SIZE)
    """Most instances merged into one run, and most instances accepted in one request (at most
    65,536: a version is warmed up with a batch this large before it serves)."""

    max_delay_ms: float = Field(default=0.0, ge=0, le=60_000)
    """Longest the oldest queued request waits for others (at most a minute); 0 merges whatever
    is queued."""

    max_queue: int = Field(default=1024, ge=1)
    """Most requests waiting per model; beyond it requests get 503 with Retry-After."""

    request_timeout_ms: float = Field(default=30_000.0, gt=0)
    """Deadline of one inference request, queueing included; past it the answer is 504."""

    allow_non_finite: bool = False
    """Accept NaN and infinities in inputs (refused with 422 by default)."""


class VersionPolicy(BaseModel):
    """Which of a model's version directories are served: exactly one of the three keys.

    ``{"latest": N}`` serves the N highest versions, ``{"all": true}`` every version,
    ``{"specific": [1, 3]}`` the versions listed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: int | None = Field(default=None, ge=1)
    all: Literal[True] | None = None
    specific: tuple[int, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionPolicy:
        given = [key for key in ("latest", "all", "specific") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f'expected exactly one of "latest", "all", "specific", received {given}')
        return self

    def select(self, available: Sequence[str]) -> list[str]:
        """The versions to serve among ``available`` (numeric strings), lowest first.

        ``specific`` versions that are not on disk are left out here; the registry reports them.
        """
        ordered = sorted(available, key=int)
        if self.all:
            return ordered
        if self.latest is not None:
            return ordered[-self.latest:]
        assert self.specific is not None
        wanted = {str(v) for v in self.specific}
        return [v for v in ordered if v in wanted]


class ModelConfig(ServingOptions):
    """The configuration of one model: its ``config.json`` over the server's flags.

    Unknown keys and bad values are refused (:class:`InvalidModelConfigError`); the registry
    then marks the model not ready with that reason, and the server keeps running.
    """

    version_policy: VersionPolicy = VersionPolicy(latest=1)
    """Which versions are served; ``{"latest": 1}`` by default."""

    default_version: int | None = Field(default=None, ge=1)
    """The version requests without a version go to; the highest ready version when unset."""

    labels: dict[VersionLabel, Annotated[StrictInt, Field(ge=1)]] | None = None
    """TensorFlow Serving version labels, label -> version (``{"stable": 1, "canary": 2}``), for
    the ``/v1/models/{name}/labels/{label}`` routes; ``stable`` and ``canary`` keep their fixed
    rule when not listed (``service.api.tfserving.label_version``)."""

    warmup: tuple[int, ...] | None = Field(default=None, max_length=16)
    """Batch sizes (at most 16) run through every session before the version becomes ready;
    ``[1, max_batch_size]`` when unset, ``[]`` for none."""

    @model_validator(mode="after")
    def _warmup_fits(self) -> ModelConfig:
        too_large = [size for size in self.warmup or () if not 1 <= size <= self.max_batch_size]
        if too_large:
            raise ValueError(f"warmup batch sizes must be between 1 and max_batch_size "
                             f"{self.max_batch_size}, received {too_large}")
        return self

    @property
    def limits(self) -> InputLimits:
        """What a request to this model is checked against, beyond its contract."""
        return InputLimits(max_batch_size=self.max_batch_size, allow_non_finite=self.allow_non_finite)

    @property
    def warmup_sizes(self) -> tuple[int, ...]:
        """The warmup batch sizes, defaults applied."""
        if self.warmup is not None:
            return self.warmup
        return tuple(sorted({1, self.max_batch_size}))

    @classmethod
    def for_model(cls, defaults: ServingOptions, values: Mapping[str, Any] | None = None,
                  *, where: str = "config.json") -> ModelConfig:
        """The server's options overridden by a model's own ``values``.

        Args:
            defaults: the server's settings (any :class:`ServingOptions`).
            values: the model's keys (a parsed ``config.json`` or an override), or None.
            where: names the source in error messages.

        Raises:
            InvalidModelConfigError: unknown keys or bad values, all listed in one message.
        """
        if values is not None and not isinstance(values, Mapping):
            raise InvalidModelConfigError(f"{where}: expected a JSON object, received "
                                          f"{type(values).__name__}", expected="object",
                                          received=type(values).__name__)
        base = {name: getattr(defaults, name) for name in ServingOptions.model_fields}
        try:
            return cls.model_validate({**base, **(values or {})})
        except ValidationError as err:
            problems = [f"{'.'.join(str(p) for p in item['loc']) or 'config'}: {item['msg']} "
                        f"(received {item.get('input')!r})" for item in err.errors()]
            raise InvalidModelConfigError(f"{where} is invalid: " + "; ".join(problems),
                                          problems=problems) from err

    def public(self) -> dict[str, Any]:
        """The effective configuration as JSON (what ``GET /v2/models/{name}/config`` shows)."""
        body = self.model_dump(mode="json", exclude_none=True)
        body["warmup"] = list(self.warmup_sizes)
        return body


def read_model_config(path: Path | None, defaults: ServingOptions,
                      override: Mapping[str, Any] | None = None) -> ModelConfig:
    """Reads a model's ``config.json`` (when it exists) over the server's options.

    Args:
        path: the file; None or missing means "server defaults only".
        defaults: the server's settings.
        override: used instead of the file when given (a load request's ``config``).

    Raises:
        InvalidModelConfigError: the file is not JSON, or its keys or values are refused.
    """
    if override is not None:
        return ModelConfig.for_model(defaults, override, where="the load request's config")
    if path is None or not path.is_file():
        return ModelConfig.for_model(defaults)
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidModelConfigError(f"{path} is not readable JSON: {err}", path=str(path)) from err
    return ModelConfig.for_model(defaults, values, where=str(path))
