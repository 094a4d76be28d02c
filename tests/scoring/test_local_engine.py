"""`run_scoring_job` with the local engine: same answers as a direct ONNX Runtime run, streamed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.errors import DtypeError, NonFiniteInputError, ShapeMismatchError
from service.runtime import load_model
from service.scoring import ScoringJob, run_scoring_job
from service.scoring.writer import WriterStats

REFERENCE_TOLERANCE = 1e-6  # float32 ONNX Runtime vs float64 NumPy softmax


def test_score_npy_matches_direct_ort_with_a_ragged_last_batch(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any,
        direct_ort: Callable[..., np.ndarray]) -> None:
    x = rng.normal(size=(203, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    job = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=64)
    summary = run_scoring_job(job)
    scores = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(scores, direct_ort(digits_model.path, x, 64))
    np.testing.assert_allclose(scores, digits_model.reference(x), atol=REFERENCE_TOLERANCE)
    assert summary.count == 203 and summary.writes == 4 and summary.output_shape == [203, 10]
    written = json.loads(job.summary_path.read_text())
    assert written["count"] == 203 and written["providers"] == ["CPUExecutionProvider"]
    assert written["throughput_rows_per_s"] > 0 and written["model_name"] == "scoring_test"


def test_score_gives_the_servers_runtime_answers_bit_for_bit(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any) -> None:
    # /predict runs LoadedModel.run on validate_batch's output: the same calls on the same batch
    x = rng.normal(size=(50, 8, 8, 1))  # float64: validation converts, as the server does
    np.save(tmp_path / "x.npy", x)
    run_scoring_job(ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=50))
    served = load_model(digits_model.path, "cpu")
    expected = served.run(served.contract.validate_batch(x))["probabilities"]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_score_npz_key_and_output_name_pick_the_array_and_the_output(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any,
        direct_ort: Callable[..., np.ndarray]) -> None:
    x = rng.normal(size=(70, 8, 8, 1)).astype(np.float32)
    np.savez_compressed(tmp_path / "x.npz", images=x, labels=np.arange(70))
    job = ScoringJob(digits_model.path, tmp_path / "x.npz", tmp_path / "logits.npy", batch_size=32,
                     key="images", output_name="logits")
    run_scoring_job(job)
    np.testing.assert_array_equal(np.load(tmp_path / "logits.npy"),
                                  direct_ort(digits_model.path, x, 32, "logits"))


def test_score_image_folder_writes_the_file_order_next_to_the_output(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any,
        direct_ort: Callable[..., np.ndarray]) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = rng.integers(0, 256, size=(5, 8, 8), dtype=np.uint8)
    names = ["img10.png", "img02.png", "img01.jpg", "img03.jpeg", "img00.png"]
    for name, image in zip(names, pixels, strict=True):
        Image.fromarray(image, mode="L").save(folder / name, **({"quality": 100} if "jp" in name else {}))
    job = ScoringJob(digits_model.path, folder, tmp_path / "y.npy", batch_size=2)
    summary = run_scoring_job(job)
    order = job.order_path.read_text().splitlines()
    assert order == sorted(names) and summary.order_file == str(job.order_path)
    pngs = {name: image for name, image in zip(names, pixels, strict=True) if name.endswith(".png")}
    x = np.stack([pngs[name].astype(np.float32)[..., None] / 255 for name in order if name in pngs])
    png_rows = [i for i, name in enumerate(order) if name in pngs]
    scores = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(scores[png_rows], digits_model.reference(x), atol=REFERENCE_TOLERANCE)


def test_score_writes_the_output_in_pieces_when_the_input_is_many_batches(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any) -> None:
    x = rng.normal(size=(1000, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    job = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=100)
    partial = tmp_path / "y.npy.partial"
    seen: list[tuple[WriterStats, int]] = []
    run_scoring_job(job, on_write=lambda stats: seen.append((stats, partial.stat().st_size)))
    assert [stats.writes for stats, _ in seen] == list(range(1, 11))
    assert [stats.rows_written for stats, _ in seen] == list(range(100, 1001, 100))
    sizes = [size for _, size in seen]
    assert all(later - earlier == 100 * 10 * 4 for earlier, later in zip(sizes, sizes[1:], strict=False))
    assert sizes[0] < sizes[-1] == (tmp_path / "y.npy").stat().st_size


def test_score_rejects_a_wrong_shape_with_the_servers_message_before_any_work(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any) -> None:
    x = rng.normal(size=(12, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    served = load_model(digits_model.path, "cpu")
    with pytest.raises(ShapeMismatchError) as server_error:
        served.contract.validate_batch(x)
    with pytest.raises(ShapeMismatchError) as scoring_error:
        run_scoring_job(ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy"))
    assert scoring_error.value.message == server_error.value.message
    assert scoring_error.value.message == ("the batch has shape [12, 8, 8], expected [N, 8, 8, 1] "
                                           "(batch axis first)")
    assert scoring_error.value.exit_code == 2
    assert not list(tmp_path.glob("y.*"))


def test_score_rejects_non_numeric_arrays_with_the_servers_dtype_message(
        tmp_path: Path, digits_model: Any) -> None:
    np.save(tmp_path / "x.npy", np.ones((3, 8, 8, 1), dtype=bool))
    with pytest.raises(DtypeError, match=r"the batch has booleans \(bool\), expected numbers"):
        run_scoring_job(ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy"))


def test_score_rejects_nan_rows_and_leaves_no_output(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any) -> None:
    x = rng.normal(size=(30, 8, 8, 1)).astype(np.float32)
    x[17, 2, 3, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    job = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=10)
    with pytest.raises(NonFiniteInputError, match=r"^rows 10\.\.19: expected finite values, .* instance 7 "):
        run_scoring_job(job)
    assert not list(tmp_path.glob("y.*"))
    allowed = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=10,
                         allow_non_finite=True)
    assert run_scoring_job(allowed).count == 30
