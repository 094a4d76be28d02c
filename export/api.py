"""``to_onnx``: a Keras model in, a checked standard-ONNX file and an :class:`ExportReport` out."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnx

from export.auto import choose_strategy
from export.errors import ExportError, UnknownOutputsError
from export.graph import LoweredGraph, ModelWalk, lower_model, walk_model
from export.lowerings import AUTO_POLICY, POLICIES, STRATEGIES, require_feasible, strategy_for
from export.lowerings.base import LoweringContext
from export.lowerings.registry import LC_TYPE
from export.metadata import LayerRecord, ModelDescription, metadata_props, read_metadata, write_metadata
from export.options import MIN_OPSET, ExportOptions
from export.parity import DEFAULT_TOLERANCE, FP16_TOLERANCE, check_parity
from export.precision import FP16, to_float16
from export.runtime import make_session


@dataclass
class ExportReport:
    """What an export produced and measured."""

    path: str
    data_path: str | None
    opset: int
    policy: str
    precision: str
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
                 f"{self.nodes} nodes, {self.precision}, {self.seconds:.2f} s"]
        for layer in self.layers:
            timings = f" timings_ms={layer['timings_ms']}" if "timings_ms" in layer else ""
            lines.append(f"  {layer['name']}: implementation {layer['implementation']} -> "
                         f"{layer['lowering']}, {layer['nodes']} nodes{timings}")
        parity = ("not checked (--no-check)" if self.parity_max_rel_error is None
                  else f"{self.parity_max_rel_error:.2e} max relative error vs Keras")
        lines.append(f"  parity: {parity}")
        return "\n".join(lines)


def to_onnx(model: Any, path: str | os.PathLike[str], options: ExportOptions | None = None) -> ExportReport:
    """Export a Keras model to a standard-ONNX file.

    Args:
        model: a built Sequential or functional ``keras.Model`` with one input.
        path: where to write the ``.onnx`` file.
        options: how to export (:class:`ExportOptions`); default: ``ExportOptions()``.

    Returns:
        An :class:`ExportReport`.

    Raises:
        ExportError: bad options, a model that is not a walkable Keras model, unsupported
            layers (all listed at once), a strategy that refuses a layer (e.g. a dense kernel
            over budget), or a failed parity check.
    """
    start = time.perf_counter()
    options = options if options is not None else ExportOptions()
    check_options(options)
    ctx = LoweringContext(opset=options.opset, dense_budget_bytes=options.dense_budget_bytes)
    model = sub_model(model, options.outputs)
    walk = walk_model(model)
    strategies, timings = _plan_strategies(walk, options, ctx)
    if options.precision == FP16:
        _require_float_strategies(strategies)
    tolerance = options.tolerance or _default_tolerance(strategies, options.precision)
    graph = lower_model(walk, strategies, ctx, output_names=list(options.outputs) or None)
    if options.precision == FP16:
        to_float16(graph.model)
    desc = _describe(model, walk, graph, options, strategies, timings, ctx.opset)
    target = Path(path)
    external = _initializer_bytes(graph.model) >= options.external_data_threshold
    save = _save_external if external else _save_inline
    parity = save(model, graph, desc, target, options, tolerance)
    data_path = _data_path(target) if external else None
    size = target.stat().st_size + (data_path.stat().st_size if data_path else 0)
    return ExportReport(
        path=str(target), data_path=str(data_path) if data_path else None, opset=ctx.opset,
        policy=options.policy, precision=options.precision, layers=[layer.to_json() for layer in desc.layers],
        nodes=len(graph.model.graph.node), parity_max_rel_error=parity, size_bytes=size,
        seconds=time.perf_counter() - start, input_name=graph.input_name, output_names=graph.output_names)


def check_options(options: ExportOptions) -> None:
    """The checks of ``options`` that need the registry or onnx (the rest are ExportOptions' own).

    Raises:
        ExportError: a policy that is not registered, an opset the installed onnx does not know.
    """
    if options.policy not in POLICIES:
        raise ExportError(f"Invalid value for argument `policy`. Expected one of {list(POLICIES)}. "
                          f"Received: policy={options.policy!r}")
    latest = onnx.defs.onnx_opset_version()
    if options.opset > latest:
        raise ExportError(f"Invalid value for argument `opset`. Expected an integer from {MIN_OPSET} to "
                          f"{latest}. Received: opset={options.opset!r}")


def sub_model(model: Any, outputs: Sequence[str]) -> Any:
    """The part of ``model`` that computes the layers named in ``outputs`` (``model`` when empty).

    The layers' output tensors are taken from the model's own graph (a layer of a loaded
    Sequential can have several calls; ``layer.output`` would pick any one of them).

    Raises:
        UnknownOutputsError: a name that is not a layer of the model (the message lists them all).
        ExportError: the model is not walkable, or a named layer is called more than once.
    """
    if not outputs:
        return model
    import keras

    walk = walk_model(model)
    calls: dict[str, list[Any]] = {}
    for step in walk.steps:
        calls.setdefault(step.layer.name, []).append(step)
    unknown = [name for name in outputs if name not in calls]
    if unknown:
        raise UnknownOutputsError(unknown, list(calls), model.name)
    shared = [name for name in outputs if len(calls[name]) > 1 or len(calls[name][0].outputs) != 1]
    if shared:
        raise ExportError(f"Expected output layers called once, with one output each. Received: {shared}")
    tensors = [calls[name][0].outputs[0] for name in outputs]
    return keras.Model(walk.input_tensor, tensors, name=model.name)


def _default_tolerance(strategies: dict[str, str], precision: str) -> float:
    """The largest default tolerance of the strategies and the precision used."""
    floor = FP16_TOLERANCE if precision == FP16 else DEFAULT_TOLERANCE
    return max([floor, *(STRATEGIES[s].tolerance for s in strategies.values())])


def _require_float_strategies(strategies: dict[str, str]) -> None:
    quantized = sorted({s for s in strategies.values() if STRATEGIES[s].quantized})
    if quantized:
        raise ExportError(f"Precision fp16 needs float strategies. Received: strategies {quantized}, which "
                          "quantize (export them with precision fp32)")


def _lc_layers(walk: ModelWalk) -> list[Any]:
    return [step.layer for step in walk.steps if step.type_name == LC_TYPE]


def _plan_strategies(walk: ModelWalk, options: ExportOptions, ctx: LoweringContext,
                     ) -> tuple[dict[str, str], dict[str, dict[str, dict[str, float]]]]:
    """The strategy of every LocallyConnected2D; strategies that refuse a layer fail here, up front."""
    layers = _lc_layers(walk)
    if options.policy == AUTO_POLICY:
        choices = {layer.name: choose_strategy(layer, ctx, options.provider, options.auto_batches)
                   for layer in layers}
        return ({name: c.strategy for name, c in choices.items()},
                {name: c.timings_ms for name, c in choices.items()})
    strategies = {layer.name: strategy_for(options.policy, layer) for layer in layers}
    for layer in layers:
        require_feasible(strategies[layer.name], layer, ctx)
    return strategies, {}


def _describe(model: Any, walk: ModelWalk, graph: LoweredGraph, options: ExportOptions,
              strategies: dict[str, str],
              timings: dict[str, dict[str, dict[str, float]]], opset: int) -> ModelDescription:
    from models.labels import model_labels

    nodes = {layer.name: layer.nodes for layer in graph.layers}
    records = [LayerRecord(layer.name, layer.implementation, strategies[layer.name], nodes[layer.name],
                           timings.get(layer.name)) for layer in _lc_layers(walk)]
    return ModelDescription(
        model_name=model.name, input_name=graph.input_name, input_shape=graph.input_shape,
        data_format=_data_format(walk), output_names=graph.output_names, labels=model_labels(model),
        layers=records, policy=options.policy, opset=opset, precision=options.precision)


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


def _save_inline(model: Any, graph: LoweredGraph, desc: ModelDescription, target: Path,
                 options: ExportOptions, tolerance: float) -> float | None:
    """Check in memory, measure parity on the serialized bytes, then write the file once."""
    write_metadata(graph.model, metadata_props(desc, None))
    onnx.checker.check_model(graph.model, full_check=True)
    parity = None
    if options.check:
        session = make_session(graph.model.SerializeToString(), options.provider)
        try:
            parity = check_parity(model, session, graph.input_name, graph.input_shape,
                                  options.parity_batch_sizes, tolerance)
        except ExportError:
            onnx.save_model(graph.model, str(target))  # kept for inspection
            raise
        write_metadata(graph.model, metadata_props(desc, parity))
    onnx.save_model(graph.model, str(target))
    return parity


def _save_external(model: Any, graph: LoweredGraph, desc: ModelDescription, target: Path,
                   options: ExportOptions, tolerance: float) -> float | None:
    """Write weights to ``<name>.data``, check and measure from the files, then patch the metadata."""
    data = _data_path(target)
    data.unlink(missing_ok=True)  # onnx appends to an existing data file
    write_metadata(graph.model, metadata_props(desc, None))
    onnx.save_model(graph.model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    onnx.checker.check_model(str(target), full_check=True)
    if not options.check:
        return None
    session = make_session(str(target), options.provider)
    parity = check_parity(model, session, graph.input_name, graph.input_shape, options.parity_batch_sizes,
                          tolerance)
    del session
    header = onnx.load_model(str(target), load_external_data=False)
    write_metadata(header, {**read_metadata(header), **metadata_props(desc, parity)})
    onnx.save_model(header, str(target))
    return parity
