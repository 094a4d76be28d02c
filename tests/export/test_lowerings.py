"""Every LocallyConnected2D lowering against Keras, over implementation × data_format × padding × strides.

One model per (lowering, implementation, data_format) holds four LocallyConnected2D layers that
cover valid/same padding with unit and non-unit strides, with random (non-zero) biases so that
the bias layout quirk of channels_first is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from export.lowerings.registry import FLOAT_STRATEGIES, STRATEGIES
from tests.export.onnx_checks import assert_matches_keras, random_input

# (padding, strides, kernel) of the four layers: valid/1, same/2, same/1, valid/(2, 1).
LAYER_GRID = (("valid", (1, 1), (3, 3)), ("same", (2, 2), (3, 3)), ("same", (1, 1), (2, 3)),
              ("valid", (2, 1), (2, 2)))


def lc_stack(implementation: int, data_format: str) -> Any:
    import keras

    from models.locally_connected import LocallyConnected2D

    shape = (2, 12, 11) if data_format == "channels_first" else (12, 11, 2)
    layers = [LocallyConnected2D(3 + i, kernel, strides=strides, padding=padding, data_format=data_format,
                                 implementation=implementation, activation="tanh" if i == 1 else None,
                                 bias_initializer="random_normal", name=f"lc{i}")
              for i, (padding, strides, kernel) in enumerate(LAYER_GRID)]
    return keras.Sequential([keras.Input(shape, name="input"), *layers], name="lc_stack")


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("implementation", [1, 2, 3])
@pytest.mark.parametrize("strategy", list(STRATEGIES))  # every registered strategy is tested
def test_export_lc_stack_matches_keras_for_every_strategy(
        strategy: str, implementation: int, data_format: str, tmp_path: Path,
        export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx

    tolerance = STRATEGIES[strategy].tolerance  # 1e-4 for float strategies, 5e-2 for int8
    model = lc_stack(implementation, data_format)
    path = tmp_path / "m.onnx"
    report = to_onnx(model, path, ExportOptions(policy=strategy))
    assert report.parity_max_rel_error is not None and report.parity_max_rel_error < tolerance
    assert [layer["lowering"] for layer in report.layers] == [strategy] * 4
    onnx.checker.check_model(str(path), full_check=True)
    assert_matches_keras(model, path, random_input(export_rng, model, batch=4), rtol=tolerance)


@pytest.mark.parametrize("implementation", [1, 2, 3])
def test_export_implementation_policy_follows_each_layer(implementation: int, tmp_path: Path) -> None:
    from export import to_onnx

    report = to_onnx(lc_stack(implementation, "channels_last"), tmp_path / "m.onnx")
    expected = {1: "local", 2: "dense", 3: "sparse"}[implementation]
    assert {layer["lowering"] for layer in report.layers} == {expected}


def test_export_auto_keeps_fastest_measured_lowering(tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx

    model = lc_stack(3, "channels_last")
    path = tmp_path / "auto.onnx"
    to_onnx(model, path, ExportOptions(policy="auto"))
    layers = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["lc2d.layers"])
    for layer in layers:
        timings = layer["timings_ms"]  # strategy -> batch size -> median ms
        assert set(timings) == set(FLOAT_STRATEGIES) and "dense" in timings and "int8" not in timings
        assert all(set(t) == {"1", "64"} and min(t.values()) > 0 for t in timings.values())
        best = {b: min(t[b] for t in timings.values()) for b in ("1", "64")}
        worst = {s: max(t[b] / best[b] for b in best) for s, t in timings.items()}
        assert worst[layer["lowering"]] == min(worst.values())
    assert_matches_keras(model, path, random_input(export_rng, model))


def test_export_auto_skips_dense_over_budget(tmp_path: Path) -> None:
    from export import ExportOptions, to_onnx

    report = to_onnx(lc_stack(1, "channels_last"), tmp_path / "m.onnx", ExportOptions(policy="auto",
                     dense_budget_bytes=1))
    for layer in report.layers:
        assert set(layer["timings_ms"]) == set(FLOAT_STRATEGIES) - {"dense"}


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_lowering_node_count_is_small_and_independent_of_size(
        strategy: str, padding: str, data_format: str) -> None:
    from export.lowerings.base import LoweringContext, Tensor
    from models.locally_connected import LocallyConnected2D

    counts = []
    for size in (6, 15):
        layer = LocallyConnected2D(4, 3, padding=padding, data_format=data_format, activation="relu",
                                   name="lc")
        shape = (2, size, size) if data_format == "channels_first" else (size, size, 2)
        layer.build((None, *shape))
        lowered = STRATEGIES[strategy].lowering(layer, Tensor("x", shape), LoweringContext())
        counts.append(len(lowered.nodes))
        assert lowered.output.shape == layer.geometry.output_shape()
    assert counts[0] == counts[1] <= STRATEGIES[strategy].max_nodes


def test_sparse_lowering_stores_no_dense_kernel(tmp_path: Path) -> None:
    from export import ExportOptions, to_onnx

    model = lc_stack(3, "channels_last")
    path = tmp_path / "sparse.onnx"
    to_onnx(model, path, ExportOptions(policy="sparse"))
    proto = onnx.load(str(path))
    floats = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    stored = sum(int(np.prod(t.dims)) for t in floats)
    geos = [model.get_layer(f"lc{i}").geometry for i in range(4)]
    nonzeros = sum(g.nonzeros for g in geos)
    padding_taps = sum(int((~g.patch_valid).sum()) * g.filters for g in geos)
    biases = sum(g.output_size for g in geos)
    assert stored == nonzeros + padding_taps + biases
    assert stored < min(g.input_size * g.output_size for g in geos[:2])
    assert {n.domain for n in proto.graph.node} <= {""}


def test_chunked_lowering_with_a_ragged_last_chunk_matches_keras(
        tmp_path: Path, export_rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from export import ExportOptions, to_onnx
    from export.lowerings import chunked
    from models.locally_connected import LocallyConnected2D

    layer = LocallyConnected2D(3, 3, bias_initializer="random_normal", name="lc")  # 7 x 7 = 49 locations
    model = keras.Sequential([keras.Input((9, 9, 2)), layer, LocallyConnected2D(2, 2, name="lc2")])
    # ~5 locations per chunk (no divisor of 49 from 3 to 5): a last chunk padded with zero-weight locations
    monkeypatch.setattr(chunked, "CHUNK_BYTES", 5 * 3 * 3 * 2 * 64 * 4)
    assert layer.geometry.locations % chunked.chunk_size(layer.geometry) != 0
    path = tmp_path / "chunked.onnx"
    to_onnx(model, path, ExportOptions(policy="chunked"))
    onnx.checker.check_model(str(path), full_check=True)
    assert_matches_keras(model, path, random_input(export_rng, model, batch=3))


@pytest.mark.parametrize("opset", [17, 20])
def test_lowering_with_padding_bias_and_gelu_stays_within_bound(opset: int) -> None:
    from export.lowerings.base import LoweringContext, Tensor
    from models.locally_connected import LocallyConnected2D

    layer = LocallyConnected2D(4, 3, padding="same", activation="gelu", name="lc")
    layer.build((None, 9, 9, 2))
    # opset 20 has Gelu (one node, as max_nodes assumes); before it the exact erf form costs 5
    extra = 0 if opset >= 20 else 4
    for name, strategy in STRATEGIES.items():
        lowered = strategy.lowering(layer, Tensor("x", (9, 9, 2)), LoweringContext(opset=opset))
        assert len(lowered.nodes) <= strategy.max_nodes + extra, name


@pytest.mark.parametrize("opset", [17, 20])
def test_gelu_locally_connected_matches_keras_at_opset(opset: int, tmp_path: Path,
                                                       export_rng: np.random.Generator) -> None:
    import keras

    from export import ExportOptions, to_onnx
    from models.locally_connected import LocallyConnected2D

    model = keras.Sequential([keras.Input((9, 9, 2), name="input"),
                              LocallyConnected2D(4, 3, padding="same", activation="gelu",
                                                 bias_initializer="random_normal")])
    path = tmp_path / "gelu.onnx"
    report = to_onnx(model, path, ExportOptions(opset=opset))
    assert report.opset == opset
    assert_matches_keras(model, path, random_input(export_rng, model, batch=3))


@pytest.mark.parametrize("batch", [1, 15, 16, 40])
def test_adaptive_lowering_matches_keras_on_both_sides_of_the_switch(
        batch: int, tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from export.lowerings.adaptive import LARGE_BATCH

    assert LARGE_BATCH == 16
    model = lc_stack(1, "channels_first")
    path = tmp_path / "adaptive.onnx"
    to_onnx(model, path, ExportOptions(policy="adaptive"))
    onnx.checker.check_model(str(path), full_check=True)
    assert_matches_keras(model, path, random_input(export_rng, model, batch=batch))


@pytest.mark.parametrize("channels", [3, 12])  # input smaller / larger than the output (5 filters)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize(("padding", "data_format"), [("same", "channels_last"), ("valid", "channels_first"),
                                                      ("same", "channels_first")])
def test_chunked_lowering_puts_the_bias_on_the_smaller_side_and_writes_the_output_once(
        use_bias: bool, padding: str, data_format: str, channels: int, tmp_path: Path,
        export_rng: np.random.Generator) -> None:
    import keras

    from export import ExportOptions, to_onnx
    from models.locally_connected import LocallyConnected2D

    shape = (channels, 9, 8) if data_format == "channels_first" else (9, 8, channels)
    layer = LocallyConnected2D(5, (3, 2), padding=padding, data_format=data_format, use_bias=use_bias,
                               bias_initializer="random_normal", activation="relu", name="lc")
    model = keras.Sequential([keras.Input(shape), layer])
    path = tmp_path / "chunked.onnx"
    to_onnx(model, path, ExportOptions(policy="chunked"))
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    wide_input = 9 * 8 * channels > int(np.prod(layer.compute_output_shape((1, *shape))[1:]))
    # a small input gets a row of ones (the bias rides in the MatMul); a large one keeps its size
    assert ops.count("Add") == (1 if use_bias and wide_input else 0)
    assert ops.count("Pad") == (padding == "same") + (use_bias and not wide_input)
    producer = {out: node for node in graph.node for out in node.output}
    activation_input = producer[graph.output[0].name].input[0]
    assert producer[activation_input].op_type == ("Add" if use_bias and wide_input else "Transpose")
    assert_matches_keras(model, path, random_input(export_rng, model, batch=5))


def test_chunk_size_prefers_a_divisor_of_the_locations_so_nothing_is_sliced_away() -> None:
    from export.lowerings.chunked import chunk_size
    from models.geometry import LocalGeometry

    l4 = LocalGeometry(63, 63, 16, 16, (9, 9), (1, 1), "valid", "channels_last")  # 55 x 55 = 3025 locations
    assert chunk_size(l4) == 11 and l4.locations % 11 == 0  # about 12 wanted: 11 divides, 12 would pad
    l5 = LocalGeometry(55, 55, 16, 16, (7, 7), (2, 2), "valid", "channels_last")  # 625: no divisor in 10..20
    assert chunk_size(l5) == 20
    assert chunk_size(l4, element_bytes=1, output_bytes=512 << 10) == 25  # the int8 lowering's chunks
