"""Schemas of the 200 answers, for the OpenAPI document.

Endpoints build their JSON with orjson directly (fast, NumPy-aware); these models only describe
it. Tests compare them with real answers (tests/service/test_openapi.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PredictResponse(BaseModel):
    """TensorFlow Serving's answer: ``predictions`` (row format) or ``outputs`` (columnar format)."""

    predictions: list[Any] | None = Field(
        default=None, description="one row per instance; {output_name: value} rows when several outputs")
    outputs: Any | None = Field(default=None, description="the batch of outputs (columnar requests)")
    labels: list[str] | None = Field(default=None,
                                     description="top label per instance, when the model has labels")


class ServerMetadata(BaseModel):
    """Open Inference Protocol server metadata."""

    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    """The process runs."""

    live: bool


class Readiness(BaseModel):
    """Whether the server can answer inference requests."""

    ready: bool


class ModelReadiness(BaseModel):
    """Whether one model version can answer inference requests."""

    name: str
    version: str
    ready: bool


class TensorMetadata(BaseModel):
    """One input or output: name, Open Inference Protocol datatype, shape (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


class ModelParameters(BaseModel):
    """lc2d details of a served model version."""

    version: str
    providers: list[str]
    data_format: str | None = None
    labels: list[str] | None = None
    max_batch_size: int
    metadata: dict[str, str]


class ModelMetadata(BaseModel):
    """Open Inference Protocol model metadata."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: ModelParameters


class OutputTensor(BaseModel):
    """One output: its values in ``data``, or ``parameters.binary_data_size`` bytes after the header."""

    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    """Open Inference Protocol inference answer (the JSON header, with binary outputs)."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]
