"""`lc2d score` from the command line: files written, one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lc2d.cli import main


def test_score_command_writes_output_summary_and_reports_throughput(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = main(["score", str(digits_model.path), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"),
                 "--batch-size", "16", "--device", "cpu", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("scored 40 rows in ") and "rows/s, local, CPUExecutionProvider" in out
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), digits_model.reference(x), atol=1e-6)
    assert (tmp_path / "y.summary.json").is_file()


def _write_inputs(folder: Path) -> None:
    np.save(folder / "flat.npy", np.ones((4, 64), dtype=np.float32))
    np.save(folder / "ok.npy", np.ones((4, 8, 8, 1), dtype=np.float32))
    np.save(folder / "empty.npy", np.ones((0, 8, 8, 1), dtype=np.float32))
    np.savez(folder / "two.npz", x=np.ones((4, 8, 8, 1)), y=np.arange(4))
    (folder / "no_images").mkdir()


@pytest.mark.parametrize(("arguments", "message"), [
    (["{d}/absent.npy", "-o", "{d}/y.npy"], "received '{d}/absent.npy', which does not exist"),
    (["{d}/flat.npy", "-o", "{d}/y.npy"], "the batch has shape [4, 64], expected [N, 8, 8, 1]"),
    (["{d}/empty.npy", "-o", "{d}/y.npy"], "expected at least one instance, received 0"),
    (["{d}/two.npz", "-o", "{d}/y.npy"], "expected --key to name the one to score"),
    (["{d}/two.npz", "--key", "z", "-o", "{d}/y.npy"], "--key: expected one of the arrays"),
    (["{d}/no_images", "-o", "{d}/y.npy"], "expected a folder with PNG or JPEG images"),
    (["{d}/ok.npy", "-o", "{d}/y.csv"], "-o/--output: expected a path ending in .npy, received '{d}/y.csv'"),
    (["{d}/ok.npy", "-o", "{d}/y.npy", "--batch-size", "0"],
     "--batch-size: expected a value greater than 0, received '0'"),
    (["{d}/ok.npy", "-o", "{d}/y.npy", "--output-name", "z"], "--output-name: expected one of"),
    (["{d}/ok.npy", "-o", "{d}/y.npy", "--ray-address", "x:1"],
     "--ray-address: expected together with the ray engine, received engine 'local'"),
], ids=["missing", "shape", "empty", "no-key", "bad-key", "empty-folder", "suffix", "batch-size",
        "output-name", "ray-address"])
def test_score_command_exits_2_with_one_line_for_user_errors(
        tmp_path: Path, digits_model: Any, capsys: pytest.CaptureFixture[str],
        arguments: list[str], message: str) -> None:
    _write_inputs(tmp_path)
    argv = ["score", str(digits_model.path), *(a.format(d=tmp_path) for a in arguments), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("lc2d score: error: ") and err.count("\n") == 1
    assert message.format(d=tmp_path) in err
    assert not (tmp_path / "y.npy").exists()


def test_score_command_exits_2_for_a_missing_model(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones((2, 8, 8, 1), dtype=np.float32))
    argv = ["score", str(tmp_path / "m.onnx"), str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")]
    assert main(argv) == 2
    assert "m.onnx' does not exist" in capsys.readouterr().err
