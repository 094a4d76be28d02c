"""Lowerings of Keras layers to ONNX, in one table of strategies (see ``registry``)."""

from export.lowerings.registry import (
    AUTO_POLICY,
    FLOAT_STRATEGIES,
    IMPLEMENTATION_POLICY,
    LOWERINGS,
    POLICIES,
    QUANTIZED_STRATEGIES,
    STANDARD,
    STRATEGIES,
    Strategy,
    auto_candidates,
    find_lowering,
    require_feasible,
    strategy_for,
)

__all__ = ["AUTO_POLICY", "FLOAT_STRATEGIES", "IMPLEMENTATION_POLICY", "LOWERINGS", "POLICIES",
           "QUANTIZED_STRATEGIES", "STANDARD", "STRATEGIES", "Strategy", "auto_candidates", "find_lowering",
           "require_feasible", "strategy_for"]
