"""Lowerings of Keras layers to ONNX, in one table keyed by (layer type, strategy)."""

from export.lowerings.registry import (
    LC_STRATEGIES,
    LOWERINGS,
    QUANTIZED_STRATEGIES,
    STANDARD,
    find_lowering,
)

__all__ = ["LC_STRATEGIES", "LOWERINGS", "QUANTIZED_STRATEGIES", "STANDARD", "find_lowering"]
