"""Export of Keras models built on LocallyConnected2D to standard ONNX (see docs/export.md).

The names below are imported on first use (PEP 562), so that light modules of this package
(``export.options``, ``export.errors``) load without TensorFlow or onnx, e.g. for ``lc2d --help``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the redundant aliases mark re-exports for type checkers
    from export.api import ExportReport as ExportReport
    from export.api import to_onnx as to_onnx
    from export.errors import DenseKernelTooLargeError as DenseKernelTooLargeError
    from export.errors import ExportError as ExportError
    from export.errors import ParityError as ParityError
    from export.errors import UnknownOutputsError as UnknownOutputsError
    from export.errors import UnsupportedLayersError as UnsupportedLayersError
    from export.lowerings.registry import POLICIES as POLICIES
    from export.lowerings.registry import STRATEGIES as STRATEGIES
    from export.options import ExportOptions as ExportOptions

_PUBLIC = {
    "ExportReport": "export.api", "to_onnx": "export.api", "ExportOptions": "export.options",
    "POLICIES": "export.lowerings.registry", "STRATEGIES": "export.lowerings.registry",
    "DenseKernelTooLargeError": "export.errors", "ExportError": "export.errors",
    "ParityError": "export.errors", "UnknownOutputsError": "export.errors",
    "UnsupportedLayersError": "export.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'export' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
