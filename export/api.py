"""``to_onnx``: a Keras model in, a checked standard-ONNX file and an :class:`ExportReport` out."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from export.auto import DEFAULT_AUTO_BATCHES, choose_lowering
from export.errors import ExportError
from export.graph import LoweredGraph, ModelWalk, lower_model, walk_model
from export.lowerings import LC_STRATEGIES, QUANTIZED_STRATEGIES
from export.lowerings.base import DEFAULT_DENSE_BUDGET_BYTES, LoweringContext
from export.lowerings.dense import check_dense_budget
from export.metadata import LayerRecord, ModelDescription, metadata_props, read_metadata, write_metadata
from export.parity import DEFAULT_BATCH_SIZES, DEFAULT_TOLERANCE, INT8_TOLERANCE, check_parity
from export.runtime import DEFAULT_PROVIDER, make_session

LOWERING_CHOICES = ("implementation", "local", "chunked", "adaptive", "dense", "sparse", "auto", "int8")
BY_IMPLEMENTATION = {1: "local", 2: "dense", 3: "sparse"}
MIN_OPSET = 17
EXTERNAL_DATA_THRESHOLD = 2 * 1024**3  # protobuf cannot serialize a message of 2 GiB or more
_LC_TYPE = "LocallyConnected2D"


@dataclass
class ExportReport:
    """What an export produced and measured."""

    path: str
    data_path: str | None
    opset: int
    lowering: str
    layers: list[dict[str, Any]]
    nodes: int
    parity_max_rel_error: float | None
    size_bytes: int
    seconds: float
    input_name: str
    output_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for the command line."""
        lines = [f"wrote {self.path} ({self.size_bytes / 2**20:.2f} MiB"
                 + (f", weights in {self.data_path}" if self.data_path else "") + f"), opset {self.opset}, "
                 f"{self.nodes} nodes, {self.seconds:.2f} s"]
        for layer in self.layers:
            timings = f" timings_ms={layer['timings_ms']}" if "timings_ms" in layer else ""
            lines.append(f"  {layer['name']}: implementation {layer['implementation']} -> "
                         f"{layer['lowering']}, {layer['nodes']} nodes{timings}")
        parity = ("not checked (--no-check)" if self.parity_max_rel_error is None
                  else f"{self.parity_max_rel_error:.2e} max relative error vs Keras")
        lines.append(f"  parity: {parity}")
        return "\n".join(lines)


def to_onnx(model: Any, path: str | os.PathLike[str], lowering: str = "implementation", opset: int = 20,
            check: bool = True, *, dense_budget_bytes: int = DEFAULT_DENSE_BUDGET_BYTES,
            external_data_threshold: int = EXTERNAL_DATA_THRESHOLD, provider: str = DEFAULT_PROVIDER,
            tolerance: float | None = None, parity_batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
            auto_batches: tuple[int, ...] = DEFAULT_AUTO_BATCHES) -> ExportReport:
    """Export a Keras model to a standard-ONNX file.

    Args:
        model: a built Sequential or functional ``keras.Model`` with one input.
        path: where to write the ``.onnx`` file.
        lowering: how each LocallyConnected2D is lowered: ``implementation`` (1 → local,
            2 → dense, 3 → sparse), ``local``, ``chunked``, ``adaptive``, ``dense``, ``sparse``,
            ``auto`` (the fastest float lowering measured) or ``int8`` (opt-in: 8-bit integer
            products, see ``export/lowerings/int8.py``; its parity check allows ``INT8_TOLERANCE``).
        opset: ONNX opset of the standard domain, at least 17.
        check: run the parity check (ONNX Runtime vs Keras) and fail over ``tolerance``.
        dense_budget_bytes: largest dense kernel (bytes) the ``dense`` lowering may create.
        external_data_threshold: initializers totalling this many bytes or more go to a
            ``<name>.onnx.data`` file next to the model.
        provider: ONNX Runtime execution provider for the parity check and ``auto`` timings.
        tolerance: largest accepted relative error of the parity check; default
            ``DEFAULT_TOLERANCE`` (1e-4), or ``INT8_TOLERANCE`` with ``lowering="int8"``.
        parity_batch_sizes: batch sizes of the parity check.
        auto_batches: batch sizes at which ``auto`` times each lowering.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: bad arguments, a model that is not a walkable Keras model, unsupported
            layers (all listed at once), a dense kernel over budget, or a failed parity check.
    """
    start = time.perf_counter()
    if tolerance is None:
        tolerance = INT8_TOLERANCE if lowering in QUANTIZED_STRATEGIES else DEFAULT_TOLERANCE
    _validate(lowering, opset, tolerance)
    ctx = LoweringContext(opset=int(opset), dense_budget_bytes=int(dense_budget_bytes))
    walk = walk_model(model)
    strategies, timings = _plan_strategies(walk, lowering, ctx, provider, auto_batches)
    graph = lower_model(walk, strategies, ctx)
    desc = _describe(model, walk, graph, lowering, strategies, timings, ctx.opset)
    target = Path(path)
    external = _initializer_bytes(graph.model) >= external_data_threshold
    if external:
        parity = _save_external(model, graph, desc, target, check, provider, tolerance, parity_batch_sizes)
    else:
        parity = _save_inline(model, graph, desc, target, check, provider, tolerance, parity_batch_sizes)
    data_path = _data_path(target) if external else None
    size = target.stat().st_size + (data_path.stat().st_size if data_path else 0)
    return ExportReport(
        path=str(target), data_path=str(data_path) if data_path else None, opset=ctx.opset,
        lowering=lowering, layers=[layer.to_json() for layer in desc.layers],
        nodes=len(graph.model.graph.node), parity_max_rel_error=parity, size_bytes=size,
        seconds=time.perf_counter() - start, input_name=graph.input_name, output_names=graph.output_names)


def _validate(lowering: str, opset: int, tolerance: float) -> None:
    if lowering not in LOWERING_CHOICES:
        raise ExportError(f"Invalid value for argument `lowering`. Expected one of {list(LOWERING_CHOICES)}. "
                          f"Received: lowering={lowering!r}")
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise ExportError(f"Invalid value for argument `opset`. Expected an integer from {MIN_OPSET} to "
                          f"{latest}. Received: opset={opset!r}")
    if not tolerance > 0:
        raise ExportError(f"Invalid value for argument `tolerance`. Expected a positive number. "
                          f"Received: tolerance={tolerance!r}")


def _lc_layers(walk: ModelWalk) -> list[Any]:
    return [step.layer for step in walk.steps if step.type_name == _LC_TYPE]


def _plan_strategies(walk: ModelWalk, lowering: str, ctx: LoweringContext, provider: str,
                     auto_batches: tuple[int, ...],
                     ) -> tuple[dict[str, str], dict[str, dict[str, dict[str, float]]]]:
    """The strategy of every LocallyConnected2D; dense kernels over budget are refused here, up front."""
    layers = _lc_layers(walk)
    if lowering == "auto":
        choices = {layer.name: choose_lowering(layer, ctx, provider, auto_batches) for layer in layers}
        return ({name: c.strategy for name, c in choices.items()},
                {name: c.timings_ms for name, c in choices.items()})
    strategies = {layer.name: BY_IMPLEMENTATION[layer.implementation] if lowering == "implementation"
                  else lowering for layer in layers}
    for layer in layers:
        if strategies[layer.name] == "dense":
            check_dense_budget(layer, ctx)
    assert set(strategies.values()) <= {*LC_STRATEGIES, *QUANTIZED_STRATEGIES}
    return strategies, {}


def _describe(model: Any, walk: ModelWalk, graph: LoweredGraph, lowering: str, strategies: dict[str, str],
              timings: dict[str, dict[str, dict[str, float]]], opset: int) -> ModelDescription:
    from models.labels import model_labels

    nodes = {layer.name: layer.nodes for layer in graph.layers}
    records = [LayerRecord(layer.name, layer.implementation, strategies[layer.name], nodes[layer.name],
                           timings.get(layer.name)) for layer in _lc_layers(walk)]
    return ModelDescription(
        model_name=model.name, input_name=graph.input_name, input_shape=graph.input_shape,
        data_format=_data_format(walk), output_names=graph.output_names, labels=model_labels(model),
        layers=records, requested_lowering=lowering, opset=opset)


def _data_format(walk: ModelWalk) -> str:
    """The first image layer's data_format, else Keras's default."""
    import keras

    for step in walk.steps:
        fmt = getattr(step.layer, "data_format", None)
        if fmt in ("channels_last", "channels_first"):
            return str(fmt)
    return str(keras.config.image_data_format())


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) for t in model.graph.initializer)


def _data_path(target: Path) -> Path:
    return target.with_name(target.name + ".data")


def _save_inline(model: Any, graph: LoweredGraph, desc: ModelDescription, target: Path, check: bool,
                 provider: str, tolerance: float, batch_sizes: Sequence[int]) -> float | None:
    """Check in memory, measure parity on the serialized bytes, then write the file once."""
    write_metadata(graph.model, metadata_props(desc, None))
    onnx.checker.check_model(graph.model, full_check=True)
    parity = None
    if check:
        session = make_session(graph.model.SerializeToString(), provider)
        try:
            parity = check_parity(model, session, graph.input_name, graph.input_shape, batch_sizes, tolerance)
        except ExportError:
            onnx.save_model(graph.model, str(target))  # kept for inspection
            raise
        write_metadata(graph.model, metadata_props(desc, parity))
    onnx.save_model(graph.model, str(target))
    return parity


def _save_external(model: Any, graph: LoweredGraph, desc: ModelDescription, target: Path, check: bool,
                   provider: str, tolerance: float, batch_sizes: Sequence[int]) -> float | None:
    """Write weights to ``<name>.data``, check and measure from the files, then patch the metadata."""
    data = _data_path(target)
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    write_metadata(graph.model, metadata_props(desc, None))
    onnx.save_model(graph.model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    onnx.checker.check_model(str(target), full_check=True)
    if not check:
        return None
    session = make_session(str(target), provider)
    parity = check_parity(model, session, graph.input_name, graph.input_shape, batch_sizes, tolerance)
    del session
    header = onnx.load_model(str(target), load_external_data=False)
    write_metadata(header, {**read_metadata(header), **metadata_props(desc, parity)})
    onnx.save_model(header, str(target))
    return parity
