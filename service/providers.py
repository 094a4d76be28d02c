"""Which ONNX Runtime execution providers a ``--device`` setting asks for, with their options.

One table (:data:`DEVICES`) names every device setting; the CLI choices, the settings' type and
the error messages are read from it. Each accelerator falls back to the next one in its chain
(TensorRT → CUDA → CPU), so a graph with an operator TensorRT cannot build still runs.

Example:
    >>> plan = plan_providers("tensorrt", Path("repo/digits/1/model.onnx"),
    ...                       available=["TensorrtExecutionProvider", "CUDAExecutionProvider",
    ...                                  "CPUExecutionProvider"])
    >>> plan.names
    ['TensorrtExecutionProvider', 'CUDAExecutionProvider', 'CPUExecutionProvider']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.errors import ProviderUnavailableError

Device = Literal["auto", "cpu", "cuda", "tensorrt"]
TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

DEVICES: dict[str, tuple[str, ...]] = {
    "auto": (CUDA, CPU),
    "cpu": (CPU,),
    "cuda": (CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
}
"""Device setting -> providers in priority order. ``auto`` drops what this build lacks; the
others require their first provider."""

TRT_CACHE_DIRNAME = "trt_cache"
"""Folder next to the model file where TensorRT keeps built engines between starts."""

_INSTALL_HINT = {
    CUDA: "install onnxruntime-gpu on a machine with an NVIDIA GPU",
    TENSORRT: "install onnxruntime-gpu built with TensorRT and the TensorRT libraries",
}


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to open a session with, and what the device setting requires of them.

    Attributes:
        device: the device setting.
        providers: ``(name, options)`` pairs in priority order, as ``InferenceSession`` takes them.
        required: the provider that must really be in use once the session exists (None for
            ``auto`` and ``cpu``).
    """

    device: str
    providers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    required: str | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]

    def check_in_use(self, used: list[str]) -> None:
        """Raises :class:`ProviderUnavailableError` when the required provider did not start."""
        if self.required is not None and self.required not in used:
            raise ProviderUnavailableError(
                f"--device {self.device}: onnxruntime could not start {self.required} (no usable GPU "
                f"or missing libraries?); providers in use: {used}", expected=self.required,
                received=used)


def plan_providers(device: str, model_path: Path | None = None, *, fp16: bool = False,
                   available: list[str] | None = None) -> ProviderPlan:
    """Chooses execution providers (and their options) for a device setting.

    Args:
        device: one of :data:`DEVICES`.
        model_path: the model file; TensorRT caches its engines in ``trt_cache/`` beside it.
        fp16: let TensorRT run in fp16 where it decides to (``trt_fp16_enable``).
        available: providers this ONNX Runtime build offers; defaults to
            ``onnxruntime.get_available_providers()``.

    Returns:
        The plan, always ending with the CPU provider.

    Raises:
        ValueError: an unknown device name.
        ProviderUnavailableError: a device whose first provider this build does not offer.
    """
    if device not in DEVICES:
        raise ValueError(f"expected device to be one of {list(DEVICES)}, received {device!r}")
    if available is None:
        import onnxruntime

        available = list(onnxruntime.get_available_providers())
    chain = DEVICES[device]
    required = None if device in ("auto", "cpu") else chain[0]
    if required is not None and required not in available:
        raise ProviderUnavailableError(
            f"--device {device} needs {required}, but this onnxruntime offers only {available}; "
            f"{_INSTALL_HINT[required]}, or use --device auto/cpu", expected=required, received=available)
    names = [name for name in chain if name in available or name == CPU]
    return ProviderPlan(device, [(name, _options(name, model_path, fp16)) for name in names], required)


def _options(provider: str, model_path: Path | None, fp16: bool) -> dict[str, Any]:
    if provider != TENSORRT:
        return {}
    options: dict[str, Any] = {"trt_fp16_enable": fp16}
    if model_path is not None:
        options["trt_engine_cache_enable"] = True
        options["trt_engine_cache_path"] = str(model_path.parent / TRT_CACHE_DIRNAME)
    return options
