"""Errors an export can meet. Each says what was expected and what was received.

They subclass ``ValueError`` (the API contract for bad input) and carry the exit code the CLI
uses: 2 for a model or an option the exporter cannot take, 1 for a parity failure (the export
ran, but ONNX Runtime and Keras disagree, which is a defect to report, not a user error).
"""

from __future__ import annotations

from collections.abc import Sequence


class ExportError(ValueError):
    """Base class: an export that cannot be done as asked."""

    exit_code = 2


class UnsupportedLayersError(ExportError):
    """One or more layers have no lowering; lists all of them at once."""

    def __init__(self, problems: Sequence[tuple[str, str, str]], supported: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = [f"  - {name} ({kind}): {why}" for name, kind, why in self.problems]
        super().__init__(
            f"Cannot export {len(self.problems)} layer(s). Expected layers with an ONNX lowering "
            f"({', '.join(supported)}). Received:\n" + "\n".join(lines))


class UnknownOutputsError(ExportError):
    """Output layers asked for that the model does not have; lists the ones it has (one line)."""

    def __init__(self, unknown: Sequence[str], available: Sequence[str], model: str) -> None:
        self.unknown, self.available = list(unknown), list(available)
        super().__init__(f"Unknown output layer(s) {self.unknown}. Expected names of layers of model "
                         f"'{model}': {self.available}")


class DenseKernelTooLargeError(ExportError):
    """The ``dense`` strategy's refusal: its kernel would exceed the dense budget."""

    def __init__(self, layer: str, kernel_bytes: int, budget_bytes: int) -> None:
        self.layer, self.kernel_bytes, self.budget_bytes = layer, kernel_bytes, budget_bytes
        super().__init__(
            f"Layer '{layer}': the dense lowering needs a {_gib(kernel_bytes)} kernel. Expected at "
            f"most the dense budget of {_gib(budget_bytes)}. Use lowering 'local' or 'sparse' "
            "(memory proportional to the connected weights), or raise the budget.")


class ParityError(ExportError):
    """ONNX Runtime and Keras disagree on the exported model."""

    exit_code = 1

    def __init__(self, error: float, tolerance: float, batch: int, output: str) -> None:
        self.error, self.tolerance = error, tolerance
        super().__init__(
            f"Parity check failed on output '{output}' at batch size {batch}: ONNX Runtime and Keras "
            f"differ by {error:.3g} (max abs difference / max abs Keras value). Expected at most "
            f"{tolerance:g}. The exported file was kept for inspection; report this as a bug.")


def _gib(size: int) -> str:
    if size >= 2**28:
        return f"{size / 2**30:.2f} GiB"
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"
