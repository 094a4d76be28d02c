"""Large models: weights go to ``<name>.onnx.data`` next to the file (threshold lowered here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tests.export.onnx_checks import assert_matches_keras, random_input


def test_export_over_threshold_writes_external_data(tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from models.builders import digits_classifier

    model = digits_classifier(implementation=1)
    path = tmp_path / "big.onnx"
    report = to_onnx(model, path, ExportOptions(external_data_threshold=64 * 1024))
    data = tmp_path / "big.onnx.data"
    assert report.data_path == str(data) and data.stat().st_size > 64 * 1024
    assert path.stat().st_size < 64 * 1024
    onnx.checker.check_model(str(path), full_check=True)
    header = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in header.graph.initializer)
    meta = {p.key: p.value for p in header.metadata_props}
    assert float(meta["lc2d.parity_max_rel_error"]) < 1e-4
    assert_matches_keras(model, path, random_input(export_rng, model))


def test_export_twice_replaces_external_data(tmp_path: Path, export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from models.builders import digits_classifier

    path = tmp_path / "big.onnx"
    to_onnx(digits_classifier(implementation=1), path, ExportOptions(external_data_threshold=1))
    first = (tmp_path / "big.onnx.data").stat().st_size
    model = digits_classifier(implementation=1)
    to_onnx(model, path, ExportOptions(external_data_threshold=1))
    assert (tmp_path / "big.onnx.data").stat().st_size == first
    assert_matches_keras(model, path, random_input(export_rng, model))


def test_export_under_threshold_is_one_file(tmp_path: Path) -> None:
    from export import to_onnx
    from models.builders import digits_classifier

    report = to_onnx(digits_classifier(), tmp_path / "small.onnx")
    assert report.data_path is None and not (tmp_path / "small.onnx.data").exists()
