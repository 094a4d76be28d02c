"""Schemas of the 200 answers, for the OpenAPI document.

Endpoints build their JSON with orjson directly (fast, NumPy-aware); these models only describe
it. Tests check real answers against them (tests/service/test_openapi.py); they forbid
undocumented fields, so an answer that grows a field fails there until its schema has it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from service.model_config import ModelConfig


class Schema(BaseModel):
    """Base of the answer schemas: a field the server sends must be documented here."""

    model_config = ConfigDict(extra="forbid")


class PredictResponse(Schema):
    """TensorFlow Serving's answer: ``predictions`` (row format) or ``outputs`` (columnar format)."""

    predictions: list[Any] | None = Field(
        default=None, description="one row per instance; {output_name: value} rows when several outputs")
    outputs: Any | None = Field(default=None, description="the batch of outputs (columnar requests)")
    labels: list[str] | None = Field(default=None,
                                     description="top label per instance, when the model has labels")


class ServerMetadata(Schema):
    """Open Inference Protocol server metadata."""

    name: str
    version: str
    extensions: list[str]


class Liveness(Schema):
    """The process runs."""

    live: bool


class Readiness(Schema):
    """Whether the server can answer inference requests."""

    ready: bool


class ModelReadiness(Schema):
    """Whether one model version can answer inference requests."""

    name: str
    version: str
    ready: bool


class TensorMetadata(Schema):
    """One input or output: name, Open Inference Protocol datatype, shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelParameters(Schema):
    """lc2d details of a served model version."""

    version: str
    providers: list[str]
    data_format: str | None = None
    labels: list[str] | None = None
    max_batch_size: int
    metadata: dict[str, str]


class ModelMetadata(Schema):
    """Open Inference Protocol model metadata."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class OutputTensor(Schema):
    """One output: its values in ``data``, or ``parameters.binary_data_size`` bytes after the header."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float] | list[str] | None = Field(
        default=None, description='numbers; for BYTES (the classification extension) "score:index[:label]"')
    parameters: dict[str, Any] | None = None


class InferResponse(Schema):
    """Open Inference Protocol inference answer (the JSON header, with binary outputs)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class VersionStatus(Schema):
    """One version in TensorFlow Serving's model status."""

    version: str
    state: str = Field(description="LOADING, AVAILABLE, UNLOADING or END")
    status: dict[str, str] = Field(description='{"error_code": "OK" | "UNKNOWN", "error_message": reason}')


class ModelStatus(Schema):
    """TensorFlow Serving's model status (``GetModelStatusResponse``)."""

    model_version_status: list[VersionStatus]


class TFModelMetadata(Schema):
    """TensorFlow Serving's model metadata (``GetModelMetadataResponse``): the signature."""

    model_spec: dict[str, str] = Field(description="name, signature_name, version")
    metadata: dict[str, Any] = Field(description="signature_def.signature_def.serving_default: inputs, "
                                                 "outputs (dtype, tensor_shape, name), method_name")


class ClassifyResponse(Schema):
    """TensorFlow Serving's classify answer: per example, every [label, score], highest first."""

    result: list[list[tuple[str, float]]]


class RegressResponse(Schema):
    """TensorFlow Serving's regress answer: one value per example."""

    result: list[float]


class RepositoryEntry(Schema):
    """One model version in the repository index (a model never loaded has no ``version``)."""

    name: str
    version: str | None = None
    state: str = Field(description="LOADING, WARMING, READY, DRAINING, UNLOADED or FAILED")
    reason: str = Field(description="why it is not ready, or what went wrong around it while it serves")


class RepositoryIndex(RootModel[list[RepositoryEntry]]):
    """Every model and version the server knows, with state and reason."""


class ModelControlAnswer(Schema):
    """The model's versions after a load or unload."""

    name: str
    versions: list[RepositoryEntry]


class ModelConfigAnswer(ModelConfig):
    """The configuration a model is served with: its config.json over the server's flags (the
    keys of docs/model-format.md; ``warmup`` with its default applied)."""

    name: str


class DurationStat(Schema):
    """A count and its cumulative time in nanoseconds."""

    count: int
    ns: int


class VersionStatistics(Schema):
    """Inference statistics of one model version (Triton's layout)."""

    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch")
    inference_count: int = Field(description="instances inferred")
    execution_count: int = Field(description="model runs (batches)")
    inference_stats: dict[str, DurationStat] = Field(
        description="success, fail, queue, compute_input (merge), compute_infer (run), "
                    "compute_output (split), cache_hit, cache_miss")
    batch_stats: list[Any]


class InferenceStatistics(Schema):
    """Statistics of every version asked for."""

    model_stats: list[VersionStatistics]
