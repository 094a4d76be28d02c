"""The shapes and models of the layer benchmark, their work (FLOPs, bytes) and what is feasible.

A workload is one LocallyConnected2D (``layer``) or a whole model (``model``). Its cost is
counted from the geometry, independently of any implementation:

* FLOPs: ``2·N·(connected taps)·F`` per LocallyConnected2D (= ``2·N·L·P·F`` with "valid";
  off-input taps of "same" are not counted), ``2·N·OH·OW·kh·kw·C·F`` per Conv2D,
  ``2·N·in·out`` per Dense; pooling, activations and bias adds are not counted.
* bytes: float32 weights (connected weights and biases only) + the input + the output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.geometry import LocalGeometry

BYTES = 4  # float32
DENSE_MAX_BYTES = 2 * 1024**3  # an implementation-2 kernel above this runs out of memory here
DENSE_MEMORY_FACTOR = 4  # kernel, mask, masked product and slack must fit in free memory
TF_KERAS_SPARSE_MAX_INDICES = 2_000_000  # tf_keras builds impl 3's indices in pure Python


@dataclass(frozen=True)
class LayerShape:
    """One LocallyConnected2D configuration (channels_last, "valid" unless said)."""

    input_shape: tuple[int, int, int]
    kernel: int
    filters: int
    stride: int = 1
    padding: str = "valid"
    activation: str | None = None

    def geometry(self) -> LocalGeometry:
        rows, cols, channels = self.input_shape
        return LocalGeometry(rows, cols, channels, self.filters, (self.kernel, self.kernel),
                             (self.stride, self.stride), self.padding, "channels_last")

    def label(self) -> str:
        r, c, ch = self.input_shape
        stride = f" s{self.stride}" if self.stride != 1 else ""
        return f"{r}×{c}×{ch}, {self.kernel}×{self.kernel}{stride}, {self.filters}"


@dataclass(frozen=True)
class Workload:
    """A benchmark subject: a name, a title for tables, and a Keras model builder."""

    name: str
    title: str
    kind: str  # "layer" or "model"
    build: Callable[[int], Any]  # implementation -> keras.Model
    shape: LayerShape | None = None
    notes: list[str] = field(default_factory=list)


def _layer_builder(shape: LayerShape) -> Callable[[int], Any]:
    def build(implementation: int) -> Any:
        import keras

        from models import LocallyConnected2D

        layer = LocallyConnected2D(shape.filters, shape.kernel, strides=shape.stride, padding=shape.padding,
                                   activation=shape.activation, implementation=implementation, name="lc")
        return keras.Sequential([keras.Input(shape.input_shape, name="input"), layer], name="lc_layer")
    return build


def _seed_example(implementation: int) -> Any:
    from models import seed_example

    return seed_example(implementation=implementation)


def _deepface(implementation: int) -> Any:
    from models import deepface

    return deepface(implementation=implementation)


LAYER_SHAPES: dict[str, tuple[str, LayerShape]] = {
    "ref1": ("reference layer 1", LayerShape((32, 32, 3), 3, 64)),
    "ref2": ("reference layer 2", LayerShape((30, 30, 64), 3, 32)),
    "L4": ("DeepFace L4", LayerShape((63, 63, 16), 9, 16, activation="relu")),
    "L5": ("DeepFace L5", LayerShape((55, 55, 16), 7, 16, stride=2, activation="relu")),
    "L6": ("DeepFace L6", LayerShape((25, 25, 16), 5, 16, activation="relu")),
    "tiny": ("tiny (tests)", LayerShape((8, 8, 2), 3, 4)),
}


def all_workloads() -> dict[str, Workload]:
    """Every known workload by name (``tiny`` is for tests and is not in the default set)."""
    loads = {key: Workload(key, f"{title} ({shape.label()})", "layer", _layer_builder(shape), shape)
             for key, (title, shape) in LAYER_SHAPES.items()}
    loads["seed_example"] = Workload("seed_example", "reference example (32×32×3 → LC 64 → LC 32)", "model",
                                     _seed_example)
    loads["deepface"] = Workload("deepface", "DeepFace (152×152×3, 8,631 classes)", "model", _deepface)
    return loads


DEFAULT_WORKLOADS = ("ref1", "ref2", "L4", "L5", "L6", "seed_example", "deepface")
QUICK_WORKLOADS = ("ref1", "L6")


# --- cost ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cost:
    """Work of one forward pass of a batch: FLOPs and the bytes that must move."""

    flops: float
    weight_bytes: float
    input_bytes: float
    output_bytes: float

    @property
    def nbytes(self) -> float:
        return self.weight_bytes + self.input_bytes + self.output_bytes


def _instance_size(shape: Any) -> int:
    size = 1
    for dim in shape[1:]:
        size *= int(dim)
    return size


def layer_cost(layer: Any, batch: int) -> tuple[float, float]:
    """``(FLOPs, weight bytes)`` of one Keras layer for a batch (zero for layers without weights)."""
    kind = type(layer).__name__
    if kind == "LocallyConnected2D":
        geo = layer.geometry
        connected = int(geo.patch_valid.sum()) * geo.filters
        bias = geo.output_size if layer.use_bias else 0
        return 2.0 * batch * connected, float(connected + bias) * BYTES
    if kind == "Conv2D":
        kh, kw = layer.kernel_size
        channels, out = int(layer.kernel.shape[2]), _instance_size(layer.output.shape)
        return 2.0 * batch * out * kh * kw * channels, float(layer.count_params()) * BYTES
    if kind == "Dense":
        rows, cols = (int(d) for d in layer.kernel.shape)
        return 2.0 * batch * rows * cols, float(layer.count_params()) * BYTES
    return 0.0, float(layer.count_params()) * BYTES


def model_cost(model: Any, batch: int) -> Cost:
    """Cost of a built Keras model (see the module docstring)."""
    flops, weights = 0.0, 0.0
    for layer in model.layers:
        f, w = layer_cost(layer, batch)
        flops, weights = flops + f, weights + w
    return Cost(flops, weights, float(batch * _instance_size(model.input_shape) * BYTES),
                float(batch * _instance_size(model.output_shape) * BYTES))


# --- feasibility --------------------------------------------------------------------------

def lc_geometries(model: Any) -> list[LocalGeometry]:
    return [layer.geometry for layer in model.layers if type(layer).__name__ == "LocallyConnected2D"]


def dense_kernel_skip(model: Any, available_bytes: float) -> str | None:
    """Why implementation 2 (a dense kernel per LC layer) cannot run here, or None."""
    sizes = [g.input_size * g.output_size * BYTES for g in lc_geometries(model)]
    if not sizes:
        return None
    largest, total = max(sizes), sum(sizes)
    if largest > DENSE_MAX_BYTES:
        return (f"out of memory: dense kernel {largest / 2**30:.2f} GiB > "
                f"{DENSE_MAX_BYTES / 2**30:.0f} GiB limit")
    if DENSE_MEMORY_FACTOR * total > available_bytes:
        return (f"out of memory: dense kernels {total / 2**30:.2f} GiB need ~{DENSE_MEMORY_FACTOR}× that, "
                f"{available_bytes / 2**30:.1f} GiB free")
    return None


def tf_keras_sparse_skip(model: Any, max_indices: int) -> str | None:
    """Why tf_keras's implementation 3 is not run: its pure-Python index build, or None."""
    count = sum(g.nonzeros for g in lc_geometries(model))
    if count > max_indices:
        return (f"too slow: tf_keras builds {count / 1e6:.1f} M sparse indices in pure Python "
                f"(limit {max_indices / 1e6:.1f} M; measured ~12 k indices/s on a loaded 2-core machine)")
    return None
