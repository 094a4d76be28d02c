"""``ExportOptions``: everything ``to_onnx`` can be asked, in one object; ``lc2d export``'s options
are generated from its fields (:mod:`lc2d.options`).

This module imports nothing heavy (no TensorFlow, no onnx), so ``lc2d --help`` can read the
fields. The ``policy`` is checked against the strategy registry, and the opset against the
installed onnx, when ``to_onnx`` runs.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

MIN_OPSET = 17
DEFAULT_OPSET = 20
DEFAULT_DENSE_BUDGET_BYTES = 1 << 30  # 1 GiB of float32 dense kernel
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf cannot serialize a message of 2 GiB or more
DEFAULT_PROVIDER = "CPUExecutionProvider"
Precision = Literal["fp32", "fp16"]
PositiveInt = Annotated[int, Field(gt=0)]


@pydantic_dataclass(frozen=True, config=ConfigDict(use_attribute_docstrings=True, extra="forbid"))
class ExportOptions:
    """How to export a model; every field has a default (see docs/export.md).

    Raises:
        pydantic.ValidationError (a ValueError): a value of the wrong type or out of range.
    """

    policy: str = "implementation"
    """How each LocallyConnected2D gets its strategy: implementation (1 local, 2 dense, 3 sparse),
    auto (the fastest feasible float strategy, measured), or one registered strategy for every
    layer (export.lowerings.POLICIES; int8 is opt-in and changes the numbers)."""

    opset: int = Field(default=DEFAULT_OPSET, ge=MIN_OPSET)
    """ONNX opset of the standard domain."""

    check: bool = True
    """Run the parity check (ONNX Runtime vs Keras on random inputs) and fail over the tolerance."""

    dense_budget_bytes: int = Field(default=DEFAULT_DENSE_BUDGET_BYTES, gt=0)
    """Largest dense kernel, in bytes, the dense strategy may create."""

    external_data_threshold: int = Field(default=EXTERNAL_DATA_THRESHOLD, gt=0)
    """Initializers totalling this many bytes or more go to MODEL.onnx.data next to the file."""

    provider: str = DEFAULT_PROVIDER
    """ONNX Runtime execution provider of the parity check and the auto timings."""

    tolerance: float | None = Field(default=None, gt=0)
    """Largest relative error the parity check accepts; default: the largest default tolerance of
    the strategies and precision used (1e-4 float32, 1e-2 fp16, 5e-2 int8)."""

    parity_batch_sizes: tuple[PositiveInt, ...] = Field(default=(1, 5), min_length=1)
    """Batch sizes of the parity check."""

    auto_batches: tuple[PositiveInt, ...] = Field(default=(1, 64), min_length=1)
    """Batch sizes at which auto times each candidate strategy."""

    outputs: tuple[str, ...] = ()
    """Export the sub-model ending at these layers, in this order, each ONNX output named after its
    layer; default: the model's own outputs."""

    precision: Precision = "fp32"
    """fp16: weights and compute in float16, float32 inputs and outputs (a Cast at each end)."""

    @field_validator("outputs")
    @classmethod
    def _distinct_names(cls, outputs: tuple[str, ...]) -> tuple[str, ...]:
        if not all(outputs) or len(set(outputs)) < len(outputs):
            raise ValueError(f"expected distinct layer names, received {list(outputs)}")
        return outputs

    def with_changes(self, **changes: Any) -> ExportOptions:
        """A copy with ``changes`` applied (checked like the original)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}
