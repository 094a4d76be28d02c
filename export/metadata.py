"""The ``metadata_props`` of an exported file: everything the server needs without Keras.

The keys, their format and the builder are :mod:`service.model_format` (shared with the server
and the test fixtures); this module describes a model in those terms and writes them into the
ONNX proto.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from models.provenance import library_versions
from service.model_format import build_metadata

# Libraries whose versions an exported file records (``lc2d.versions``).
EXPORT_LIBRARIES = ("lc2d-serve", "keras", "tensorflow", "onnx", "onnxruntime", "numpy")


@dataclass
class LayerRecord:
    """How one LocallyConnected2D was exported (one entry of ``lc2d.layers``)."""

    name: str
    implementation: int
    strategy: str
    nodes: int
    timings_ms: dict[str, dict[str, float]] | None = None  # strategy -> batch size -> median ms

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "implementation": self.implementation,
                                  "lowering": self.strategy, "nodes": self.nodes}
        if self.timings_ms is not None:
            record["timings_ms"] = self.timings_ms
        return record


@dataclass
class ModelDescription:
    """What the metadata says about a model, before the parity error is known."""

    model_name: str
    input_name: str
    input_shape: tuple[int, ...]
    data_format: str
    output_names: list[str]
    labels: list[str] | None
    layers: list[LayerRecord]
    policy: str
    opset: int
    precision: str
    extra: dict[str, str] = field(default_factory=dict)


def metadata_props(desc: ModelDescription, parity_error: float | None) -> dict[str, str]:
    """The ``lc2d.*`` key/value pairs for ``desc`` (``parity_error`` None means not checked)."""
    return build_metadata(
        model_name=desc.model_name, input_name=desc.input_name, input_shape=desc.input_shape,
        output_names=desc.output_names, data_format=desc.data_format, labels=desc.labels,
        layers=[layer.to_json() for layer in desc.layers], versions=library_versions(EXPORT_LIBRARIES),
        parity_max_rel_error=parity_error, lowering_requested=desc.policy, opset=desc.opset,
        precision=desc.precision,
        extra=desc.extra)


def write_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``props``."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
