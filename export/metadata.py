"""The ``metadata_props`` of an exported file: everything the server needs without Keras.

The keys and their meaning are the contract in docs/model-format.md; values are strings, JSON
where structured.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from typing import Any

import onnx

FORMAT_VERSION = "1"


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
    extra: dict[str, str] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries involved in an export."""
    versions = {"python": platform.python_version()}
    for key, dist in (("lc2d", "lc2d-serve"), ("keras", "keras"), ("tensorflow", "tensorflow"),
                      ("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("numpy", "numpy")):
        try:
            versions[key] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[key] = "unknown"
    return versions


def metadata_props(desc: ModelDescription, parity_error: float | None) -> dict[str, str]:
    """The ``lc2d.*`` key/value pairs for ``desc`` (``parity_error`` None means not checked)."""
    props = {
        "lc2d.format_version": FORMAT_VERSION,
        "lc2d.model_name": desc.model_name,
        "lc2d.input_name": desc.input_name,
        "lc2d.input_shape": json.dumps(list(desc.input_shape)),
        "lc2d.input_dtype": "float32",
        "lc2d.data_format": desc.data_format,
        "lc2d.output_names": json.dumps(desc.output_names),
        "lc2d.layers": json.dumps([layer.to_json() for layer in desc.layers]),
        "lc2d.versions": json.dumps(library_versions()),
        "lc2d.parity_max_rel_error": "null" if parity_error is None else f"{parity_error:.3e}",
        "lc2d.lowering_requested": desc.policy,
        "lc2d.opset": str(desc.opset),
        **desc.extra,
    }
    if desc.labels is not None:
        props["lc2d.labels"] = json.dumps(desc.labels)
    return props


def write_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Replace the model's ``metadata_props`` with ``props``."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
