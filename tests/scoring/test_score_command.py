"""`lc2d score` from the command line: files written, one-line errors with exit code 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lc2d.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def _score(model: Any, tmp_path: Path, *extra: str, inputs: str = "x.npy",
           output: str = "y.npy") -> list[str]:
    return ["score", str(model.path), str(tmp_path / inputs), "-o", str(tmp_path / output),
            "--device", "cpu", "--no-progress", *extra]


def test_score_command_refuses_an_earlier_output_unless_overwrite(
        tmp_path: Path, digits_model: Any, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 8, 8, 1), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.zeros(1))  # a stale result of another run
    assert main(_score(digits_model, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "exists from an earlier run (y.npy); expected a new path, or --overwrite" in err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.zeros(1))  # left as it was
    assert main(_score(digits_model, tmp_path, "--overwrite")) == 0
    assert np.load(tmp_path / "y.npy").shape == (3, 10)


@pytest.mark.parametrize(("make", "output", "message"), [
    (lambda d: (d / "out.npy").mkdir(), "out.npy",
     "expected a file path, received '{d}/out.npy', a directory"),
    (lambda d: (d / "file").write_text("x"), "file/y.npy",
     "expected a writable path, received '{d}/file/y.npy': File exists"),
    (lambda d: (d / "y.npy.partial").mkdir(), "y.npy",
     "expected a writable path, received '{d}/y.npy': Is a directory"),
], ids=["output-is-a-directory", "parent-is-a-file", "partial-path-is-a-directory"])
def test_score_command_output_path_problems_exit_2_with_one_line(
        tmp_path: Path, digits_model: Any, capsys: pytest.CaptureFixture[str], make, output, message) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 8, 8, 1), dtype=np.float32))
    make(tmp_path)
    assert main(_score(digits_model, tmp_path, output=output)) == 2
    err = capsys.readouterr().err
    assert err.startswith("lc2d score: error: ") and err.count("\n") == 1
    assert message.format(d=tmp_path) in err


def test_score_command_image_bomb_exits_2_with_one_line(
        tmp_path: Path, digits_model: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    (tmp_path / "images").mkdir()
    Image.new("L", (300, 300)).save(tmp_path / "images" / "bomb.png")
    # Pillow refuses images over twice MAX_IMAGE_PIXELS: lowered so a 300x300 image is a "bomb"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert main(_score(digits_model, tmp_path, inputs="images")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refuses as a decompression bomb" in err


def test_score_command_sigterm_removes_the_partial_output(tmp_path: Path, digits_model: Any) -> None:
    np.save(tmp_path / "x.npy", np.ones((200_000, 8, 8, 1), dtype=np.float32))
    command = [sys.executable, "-m", "lc2d", *_score(digits_model, tmp_path, "--batch-size", "1")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    partial = tmp_path / "y.npy.partial"
    deadline = time.monotonic() + 120
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert partial.exists(), process.communicate(timeout=30)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and err.count("\n") == 1
    assert not partial.exists() and not (tmp_path / "y.npy").exists()
