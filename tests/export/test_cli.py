"""`lc2d export` on real files: success, and exit code 2 with one line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from lc2d.cli import main


@pytest.fixture(scope="module")
def digits_keras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.builders import digits_classifier

    path = tmp_path_factory.mktemp("cli") / "digits.keras"
    digits_classifier(implementation=3, labels=[str(i) for i in range(10)]).save(path)
    return path


def test_cli_export_writes_checked_onnx(digits_keras: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out, report = tmp_path / "digits.onnx", tmp_path / "report.json"
    assert main(["export", str(digits_keras), "-o", str(out), "--lowering", "local",
                 "--report", str(report)]) == 0
    onnx.checker.check_model(str(out), full_check=True)
    printed = capsys.readouterr().out
    assert "local: implementation 3 -> local" in printed and "parity:" in printed
    assert json.loads(report.read_text())["layers"][0]["lowering"] == "local"


def test_cli_export_int8_writes_a_quantized_model_within_its_tolerance(
        digits_keras: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from export.parity import INT8_TOLERANCE

    out, report = tmp_path / "digits_int8.onnx", tmp_path / "report.json"
    assert main(["export", str(digits_keras), "-o", str(out), "--lowering", "int8",
                 "--report", str(report)]) == 0
    assert "implementation 3 -> int8" in capsys.readouterr().out
    written = json.loads(report.read_text())
    assert written["layers"][0]["lowering"] == "int8" and 0 < written["parity_max_rel_error"] < INT8_TOLERANCE
    assert "MatMulInteger" in {n.op_type for g in onnx.load(str(out)).graph.node for a in g.attribute
                               if a.type == onnx.AttributeProto.GRAPH for n in a.g.node}


def test_cli_lowering_choices_are_the_registry_policies(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from export.lowerings import POLICIES, STRATEGIES

    assert {"implementation", "auto", *STRATEGIES} == set(POLICIES)
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the policy is checked first")
    assert main(["export", str(model), "--lowering", "fastest"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(f"'{policy}'" in err for policy in POLICIES)


def test_cli_export_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "absent.keras"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "expected an existing .keras file" in err and "absent.keras" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_export_not_a_keras_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "notes.keras"
    bogus.write_text("not a model")
    assert main(["export", str(bogus), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "expected a Keras model file" in err and len(err.strip().splitlines()) == 1


def test_cli_export_dense_over_budget_exits_2(digits_keras: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", str(digits_keras), "-o", str(tmp_path / "m.onnx"), "--lowering", "dense",
                 "--dense-budget-mib", "0.01"])
    assert code == 2
    err = capsys.readouterr().err
    assert "'local'" in err and "dense budget" in err


def test_cli_export_bad_opset_exits_2(digits_keras: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(digits_keras), "-o", str(tmp_path / "m.onnx"), "--opset", "13"]) == 2
    assert "--opset: expected a value of at least 17, received '13'" in capsys.readouterr().err


def test_cli_export_of_a_keras_2_h5_file_points_to_import_legacy(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import h5py

    legacy = tmp_path / "model.h5"
    with h5py.File(legacy, "w") as file:  # any HDF5 file: refused before Keras reads it
        file.attrs["keras_version"] = "2.15.0"
    assert main(["export", str(legacy), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "HDF5" in err
    assert f"lc2d import-legacy {legacy} -o {tmp_path / 'model.keras'}" in err
