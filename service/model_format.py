"""The ``lc2d.*`` metadata of an exported ONNX file: keys, format version, builder, reader.

``export`` writes these properties and ``service`` reads them; this module is the one place
that spells them (the contract in docs/model-format.md). It needs only the standard library,
so the exporter, the server and test fixtures can all import it: the server without
TensorFlow, the exporter without FastAPI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

FORMAT_VERSION = "1"
PREFIX = "lc2d."


class Key:
    """The metadata keys (all values are strings, JSON where structured)."""

    FORMAT_VERSION = "lc2d.format_version"
    MODEL_NAME = "lc2d.model_name"
    INPUT_NAME = "lc2d.input_name"
    INPUT_SHAPE = "lc2d.input_shape"  # JSON list, one instance (no batch axis)
    INPUT_DTYPE = "lc2d.input_dtype"
    DATA_FORMAT = "lc2d.data_format"  # channels_last | channels_first
    OUTPUT_NAMES = "lc2d.output_names"  # JSON list of graph output names
    LABELS = "lc2d.labels"  # JSON list of class names (optional)
    LAYERS = "lc2d.layers"  # JSON list: how each LocallyConnected2D was lowered
    VERSIONS = "lc2d.versions"  # JSON object: library versions at export
    PARITY_MAX_REL_ERROR = "lc2d.parity_max_rel_error"  # a number, or null when not checked
    LOWERING_REQUESTED = "lc2d.lowering_requested"  # the lowering policy asked for
    OPSET = "lc2d.opset"
    PRECISION = "lc2d.precision"  # fp32 | fp16 (the weights' and compute's; inputs stay float32)
    PIXEL_SCALE = "lc2d.pixel_scale"  # optional: image scoring multiplies 8-bit pixels by it


class MetadataFormatError(ValueError):
    """A metadata value that does not follow the format (the message names the key)."""


def build_metadata(*, model_name: str, input_name: str, input_shape: Sequence[int],
                   output_names: Sequence[str], data_format: str = "channels_last",
                   input_dtype: str = "float32", labels: Sequence[str] | None = None,
                   layers: Sequence[Mapping[str, Any]] = (), versions: Mapping[str, str] | None = None,
                   parity_max_rel_error: float | None = None, lowering_requested: str | None = None,
                   opset: int | None = None, precision: str | None = None,
                   extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of a model, as strings; optional keys are left out when None.

    Args:
        model_name: the model's name.
        input_name: the graph input's name.
        input_shape: one instance's shape (no batch axis).
        output_names: graph output names, in order.
        data_format: ``channels_last`` or ``channels_first``.
        input_dtype: NumPy dtype name of the input.
        labels: class names of the first output, or None.
        layers: one JSON object per LocallyConnected2D (``name``, ``implementation``,
            ``lowering``, ``nodes``, optional ``timings_ms``).
        versions: library versions at export.
        parity_max_rel_error: the parity check's largest error; None writes ``null`` (not checked).
        lowering_requested: the lowering policy.
        opset: the standard-domain opset.
        precision: ``fp32`` or ``fp16``.
        extra: further ``lc2d.*`` properties, written as given.
    """
    props = {
        Key.FORMAT_VERSION: FORMAT_VERSION,
        Key.MODEL_NAME: model_name,
        Key.INPUT_NAME: input_name,
        Key.INPUT_SHAPE: json.dumps([int(d) for d in input_shape]),
        Key.INPUT_DTYPE: input_dtype,
        Key.DATA_FORMAT: data_format,
        Key.OUTPUT_NAMES: json.dumps(list(output_names)),
        Key.LAYERS: json.dumps([dict(layer) for layer in layers]),
        Key.VERSIONS: json.dumps(dict(versions or {})),
        Key.PARITY_MAX_REL_ERROR: "null" if parity_max_rel_error is None else f"{parity_max_rel_error:.3e}",
    }
    optional = {Key.LABELS: None if labels is None else json.dumps(list(labels)),
                Key.LOWERING_REQUESTED: lowering_requested,
                Key.OPSET: None if opset is None else str(opset), Key.PRECISION: precision}
    props.update({key: value for key, value in optional.items() if value is not None})
    props.update(extra or {})
    return props


def check_format_version(metadata: Mapping[str, str]) -> None:
    """Refuse metadata written in a format version this code does not read (absent: no lc2d keys).

    Raises:
        MetadataFormatError: ``lc2d.format_version`` is present and not :data:`FORMAT_VERSION`.
    """
    version = metadata.get(Key.FORMAT_VERSION)
    if version is not None and version != FORMAT_VERSION:
        raise MetadataFormatError(f"metadata {Key.FORMAT_VERSION} is {version!r}; expected "
                                  f"{FORMAT_VERSION!r} (export the model again with this version of lc2d)")


def read_json(metadata: Mapping[str, str], key: str, default: Any = None) -> Any:
    """The JSON value of ``key``, or ``default`` when the key is absent.

    Raises:
        MetadataFormatError: the value is not valid JSON.
    """
    if key not in metadata:
        return default
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise MetadataFormatError(f"metadata {key} is not valid JSON: {metadata[key]!r}") from err
