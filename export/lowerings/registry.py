"""The one table of lowerings: layer type and strategy in, a record with the lowering function out.

Glossary (docs/architecture.md): a *policy* is what the user asks for (``implementation``,
``auto``, or one strategy for every layer); a *strategy* is a registered way to lower
LocallyConnected2D (``local``, ``dense``, ...); a *lowering function* is the pure function
``(layer, x, ctx) -> Lowered`` a strategy runs. Every other layer type has one strategy,
``standard``.

Everything that lists strategies reads them from :data:`STRATEGIES`: the policies ``to_onnx``
and ``lc2d export --lowering`` accept, ``auto``'s candidates, error messages, ``lc2d bench``'s
list and the parametrised parity tests. Registering a strategy here is all it takes to export,
benchmark and test it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from export.errors import ExportError
from export.lowerings import standard
from export.lowerings.adaptive import lower_locally_connected_adaptive
from export.lowerings.base import Lowering, LoweringContext
from export.lowerings.chunked import lower_locally_connected_chunked
from export.lowerings.dense import dense_budget_error, lower_locally_connected_dense
from export.lowerings.int8 import lower_locally_connected_int8
from export.lowerings.local import lower_locally_connected_local
from export.lowerings.sparse import lower_locally_connected_sparse, sparse_activation_bytes
from export.parity import DEFAULT_TOLERANCE, INT8_TOLERANCE
from models.geometry import LocalGeometry

STANDARD = "standard"
LC_TYPE = "LocallyConnected2D"
IMPLEMENTATION_POLICY = "implementation"  # each layer's strategy follows its implementation
AUTO_POLICY = "auto"  # each layer's strategy is the fastest feasible float one, measured

# Why a strategy cannot lower a layer within the export's limits (an error to raise), or None.
Feasibility = Callable[[Any, LoweringContext], ExportError | None]


def always_feasible(layer: Any, ctx: LoweringContext) -> ExportError | None:
    """The feasibility rule of strategies whose memory is proportional to the weights."""
    return None


@dataclass(frozen=True)
class Strategy:
    """A registered way to lower LocallyConnected2D.

    Attributes:
        name: what ``--lowering`` and ``lc2d.layers[*].lowering`` call it.
        lowering: the lowering function.
        summary: one line for help texts.
        quantized: it changes the numbers (opt-in; ``auto`` never picks it).
        tolerance: the parity check's default tolerance (normwise relative error).
        mirrors_implementation: the Keras ``implementation`` whose computation it follows under
            the ``implementation`` policy, or None.
        feasibility: the rule refusing layers it cannot lower within the export's limits.
        max_nodes: the most top-level ONNX nodes it emits per layer (a one-node activation
            included), whatever the layer's size.
        combines: the strategies whose graphs it runs unchanged, each at the batch sizes where
            that one is the faster (``adaptive``: ``local`` and ``chunked``). ``auto`` prefers
            it when its timing ties with the best (see ``export.auto``).
        activation_bytes: ``(geometry, batch) -> bytes`` of its largest intermediates where they
            grow with the batch beyond the weights' size, or None. ``auto`` does not time it at
            a batch size where they exceed its memory budget.
    """

    name: str
    lowering: Lowering
    summary: str
    quantized: bool = False
    tolerance: float = DEFAULT_TOLERANCE
    mirrors_implementation: int | None = None
    feasibility: Feasibility = always_feasible
    max_nodes: int = 12
    combines: tuple[str, ...] = ()
    activation_bytes: Callable[[LocalGeometry, int], int] | None = None

    def intermediate_bytes(self, geo: LocalGeometry, batch: int) -> int:
        """Bytes of its batch-dependent intermediates at ``batch`` (0 when it does not say)."""
        return self.activation_bytes(geo, batch) if self.activation_bytes else 0

    def refusal(self, layer: Any, ctx: LoweringContext) -> ExportError | None:
        """Why this strategy cannot lower ``layer`` under ``ctx``, or None when it can."""
        return self.feasibility(layer, ctx)


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("local", lower_locally_connected_local,
             "two block Gathers + one batched MatMul; memory proportional to the weights",
             mirrors_implementation=1),
    Strategy("chunked", lower_locally_connected_chunked,
             "a Scan over chunks of locations (Gather + MatMul kept in cache); large layers, large batches"),
    Strategy("adaptive", lower_locally_connected_adaptive,
             "local below batch 16, chunked from there (an If on the batch size)",
             combines=("local", "chunked")),
    Strategy("dense", lower_locally_connected_dense,
             "one MatMul with the masked dense kernel; refused over the dense budget",
             mirrors_implementation=2, feasibility=dense_budget_error),
    Strategy("sparse", lower_locally_connected_sparse,
             "Gather, Mul, ReduceSum over the connected weights only", mirrors_implementation=3,
             activation_bytes=sparse_activation_bytes),
    Strategy("int8", lower_locally_connected_int8,
             "8-bit integer products (MatMulInteger); opt-in, about 1 % error",
             quantized=True, tolerance=INT8_TOLERANCE, max_nodes=24),
)}
FLOAT_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if not s.quantized)
QUANTIZED_STRATEGIES = tuple(name for name, s in STRATEGIES.items() if s.quantized)
BY_IMPLEMENTATION = {s.mirrors_implementation: name for name, s in STRATEGIES.items()
                     if s.mirrors_implementation is not None}
POLICIES = (IMPLEMENTATION_POLICY, *STRATEGIES, AUTO_POLICY)  # what ``--lowering`` accepts

_IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
                    "ClassLabels")

STANDARD_LOWERINGS: dict[str, Lowering] = {
    "Conv2D": standard.lower_conv2d,
    "MaxPooling2D": standard.lower_max_pooling2d,
    "AveragePooling2D": standard.lower_average_pooling2d,
    "GlobalAveragePooling2D": standard.lower_global_average_pooling2d,
    "GlobalMaxPooling2D": standard.lower_global_max_pooling2d,
    "Dense": standard.lower_dense,
    "Flatten": standard.lower_flatten,
    "Reshape": standard.lower_reshape,
    "Permute": standard.lower_permute,
    "Activation": standard.lower_activation_layer,
    "ReLU": standard.lower_relu,
    "LeakyReLU": standard.lower_leaky_relu,
    "ELU": standard.lower_elu,
    "Softmax": standard.lower_softmax,
    "BatchNormalization": standard.lower_batch_normalization,
    "Rescaling": standard.lower_rescaling,
    "ZeroPadding2D": standard.lower_zero_padding2d,
    **dict.fromkeys(_IDENTITY_LAYERS, standard.lower_identity),
}

# The whole table, keyed by (layer type, strategy).
LOWERINGS: dict[tuple[str, str], Lowering] = {
    **{(LC_TYPE, name): s.lowering for name, s in STRATEGIES.items()},
    **{(layer_type, STANDARD): f for layer_type, f in STANDARD_LOWERINGS.items()},
}
SUPPORTED_LAYER_TYPES = (LC_TYPE, *STANDARD_LOWERINGS)


def find_lowering(layer_type: str, strategy: str) -> Lowering | None:
    """The lowering function for a layer type and strategy, or None when there is none."""
    return LOWERINGS.get((layer_type, strategy))


def auto_candidates(layer: Any, ctx: LoweringContext) -> list[str]:
    """The strategies ``auto`` times for ``layer``: every float one that is feasible under ``ctx``."""
    return [name for name in FLOAT_STRATEGIES if STRATEGIES[name].refusal(layer, ctx) is None]


def strategy_for(policy: str, layer: Any) -> str:
    """The strategy an explicit ``policy`` (not ``auto``) gives ``layer``."""
    return BY_IMPLEMENTATION[layer.implementation] if policy == IMPLEMENTATION_POLICY else policy


def require_feasible(strategy: str, layer: Any, ctx: LoweringContext) -> None:
    """Raise the strategy's refusal of ``layer`` under ``ctx``, if it has one."""
    refusal = STRATEGIES[strategy].refusal(layer, ctx)
    if refusal is not None:
        raise refusal
