"""``ExportOptions(outputs=...)`` / ``lc2d export --outputs``: the sub-model ending at chosen layers.

The reference is Keras itself: a ``keras.Model`` cut at the same layers, run on the same inputs;
tolerance ``RTOL`` (1e-4 of each output's scale), as every float export test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from lc2d.cli import main
from tests.export.onnx_checks import RTOL, random_input, run_onnx


@pytest.fixture(scope="module")
def small_deepface() -> Any:
    from models.builders import deepface

    return deepface(classes=7, input_shape=(72, 72, 3), implementation=3)


def keras_cut(model: Any, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    """The outputs of ``names`` computed by Keras (an independent cut of the same model)."""
    import keras

    cut = keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])
    return [np.asarray(y) for y in cut(x, training=False)]


def test_export_chosen_outputs_names_them_and_matches_keras(small_deepface: Any, tmp_path: Path,
                                                            export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx

    names = ["F7", "L6", "D0"]  # D0 (Dropout) lowers to nothing: its output is F7's, renamed
    path = tmp_path / "embedding.onnx"
    report = to_onnx(small_deepface, path, ExportOptions(outputs=names))
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert [o.name for o in proto.graph.output] == names == report.output_names
    assert json.loads(meta["lc2d.output_names"]) == names and "lc2d.labels" not in meta
    assert report.parity_max_rel_error is not None and report.parity_max_rel_error < RTOL
    assert "F8" not in {n.name.split("/")[0] for n in proto.graph.node}  # the classifier is cut off
    x = random_input(export_rng, small_deepface, batch=3)
    for actual, expected in zip(run_onnx(path, x), keras_cut(small_deepface, names, x), strict=True):
        assert actual.shape == expected.shape
        scale = float(np.max(np.abs(expected)))
        assert scale > 0
        np.testing.assert_allclose(actual, expected, rtol=0, atol=RTOL * scale)


def test_export_unknown_output_lists_the_available_layers(small_deepface: Any, tmp_path: Path) -> None:
    from export import ExportOptions, UnknownOutputsError, to_onnx

    with pytest.raises(UnknownOutputsError) as caught:
        to_onnx(small_deepface, tmp_path / "m.onnx", ExportOptions(outputs=["F7", "fc7"]))
    message = str(caught.value)
    assert "['fc7']" in message and "'C1', 'M2', 'C3', 'L4', 'L5', 'L6', 'F0', 'F7', 'D0', 'F8'" in message
    assert "\n" not in message and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("outputs", [["F7", "F7"], [""]])
def test_export_outputs_must_be_distinct_names(outputs: list[str]) -> None:
    from export import ExportOptions

    with pytest.raises(ValueError, match="expected distinct layer names"):
        ExportOptions(outputs=outputs)


@pytest.fixture(scope="module")
def digits_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.builders import digits_classifier

    path = tmp_path_factory.mktemp("outputs") / "digits.keras"
    digits_classifier(implementation=1, labels=[str(i) for i in range(10)]).save(path)
    return path


def test_cli_export_outputs_writes_the_chosen_layers(digits_keras: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "features.onnx"
    argv = ["export", str(digits_keras), "-o", str(out), "--outputs", "hidden", "--outputs", "local"]
    assert main(argv) == 0
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["hidden", "local"]
    assert "lc2d.labels" not in {p.key for p in proto.metadata_props}  # labels describe probabilities
    assert "parity:" in capsys.readouterr().out


def test_cli_export_unknown_output_exits_2_with_one_line(digits_keras: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(digits_keras), "-o", str(tmp_path / "m.onnx"), "--outputs", "F7"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lc2d export: error: Unknown output layer(s) ['F7']. Expected names of layers")
    assert "['local', 'flatten', 'hidden', 'probabilities', 'labels']" in err and "\n" not in err
