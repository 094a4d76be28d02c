"""Export of Keras models built on LocallyConnected2D to standard ONNX (see docs/export.md)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("lc2d-serve")
except _metadata.PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.1.0"

from export.api import LOWERING_CHOICES, ExportReport, to_onnx  # noqa: E402
from export.errors import (  # noqa: E402
    DenseKernelTooLargeError,
    ExportError,
    ParityError,
    UnsupportedLayersError,
)

__all__ = [
    "LOWERING_CHOICES",
    "DenseKernelTooLargeError",
    "ExportError",
    "ExportReport",
    "ParityError",
    "UnsupportedLayersError",
    "to_onnx",
]
