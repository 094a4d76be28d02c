"""``ExportOptions``: everything ``to_onnx`` can be asked, in one object the CLI builds.

This module imports nothing heavy (no TensorFlow, no onnx), so ``lc2d --help`` can read the
defaults. The ``policy`` is checked against the strategy registry when ``to_onnx`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from export.errors import ExportError

MIN_OPSET = 17
DEFAULT_OPSET = 20
DEFAULT_DENSE_BUDGET_BYTES = 1 << 30  # 1 GiB of float32 dense kernel
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf cannot serialize a message of 2 GiB or more
DEFAULT_PROVIDER = "CPUExecutionProvider"
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class ExportOptions:
    """How to export a model (every field has a default; see docs/export.md).

    Attributes:
        policy: how each LocallyConnected2D gets its strategy: ``implementation`` (1 → local,
            2 → dense, 3 → sparse), ``auto`` (the fastest feasible float strategy, measured),
            or the name of one registered strategy for every layer (``export.lowerings.POLICIES``).
        opset: ONNX opset of the standard domain, at least 17.
        check: run the parity check (ONNX Runtime vs Keras) and fail over ``tolerance``.
        dense_budget_bytes: largest dense kernel (bytes) the ``dense`` strategy may create.
        external_data_threshold: initializers totalling this many bytes or more go to a
            ``<name>.onnx.data`` file next to the model.
        provider: ONNX Runtime execution provider for the parity check and ``auto`` timings.
        tolerance: largest accepted relative error of the parity check; None: the largest
            default tolerance of the strategies and the precision used.
        parity_batch_sizes: batch sizes of the parity check.
        auto_batches: batch sizes at which ``auto`` times each candidate.
        outputs: names of layers whose outputs the file computes, in this order: the sub-model
            ending at them is exported, each output named after its layer; empty: the model's
            own outputs.
        precision: ``fp32``, or ``fp16``: weights and compute in float16, with float32 inputs
            and outputs (a Cast at each end); its parity tolerance is ``FP16_TOLERANCE``.
    """

    policy: str = "implementation"
    opset: int = DEFAULT_OPSET
    check: bool = True
    dense_budget_bytes: int = DEFAULT_DENSE_BUDGET_BYTES
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD
    provider: str = DEFAULT_PROVIDER
    tolerance: float | None = None
    parity_batch_sizes: tuple[int, ...] = (1, 5)
    auto_batches: tuple[int, ...] = (1, 64)
    outputs: tuple[str, ...] = ()
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # Lists are accepted for convenience and stored as tuples (the object is frozen).
        for name in ("parity_batch_sizes", "auto_batches", "outputs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._check_values()

    def _check_values(self) -> None:
        if isinstance(self.opset, bool) or not isinstance(self.opset, int) or self.opset < MIN_OPSET:
            _invalid("opset", self.opset, f"an integer of at least {MIN_OPSET}")
        if self.tolerance is not None and not self.tolerance > 0:
            _invalid("tolerance", self.tolerance, "a positive number")
        for name in ("dense_budget_bytes", "external_data_threshold"):
            if not getattr(self, name) > 0:
                _invalid(name, getattr(self, name), "a positive number of bytes")
        for name in ("parity_batch_sizes", "auto_batches"):
            sizes = getattr(self, name)
            if not sizes or not all(isinstance(b, int) and b > 0 for b in sizes):
                _invalid(name, sizes, "one or more positive integers")
        names_ok = all(isinstance(o, str) and o for o in self.outputs)
        if not names_ok or len(set(self.outputs)) < len(self.outputs):
            _invalid("outputs", list(self.outputs), "distinct layer names")
        if self.precision not in PRECISIONS:
            _invalid("precision", self.precision, f"one of {list(PRECISIONS)}")

    def with_changes(self, **changes: Any) -> ExportOptions:
        """A copy with ``changes`` applied (checked like the original)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}


def _invalid(name: str, value: Any, expected: str) -> None:
    raise ExportError(f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}")
