"""`--engine ray` on one local Ray instance: the local engine's answers, in input order."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ray")

from lc2d.cli import main  # noqa: E402
from service.errors import NonFiniteInputError  # noqa: E402
from service.scoring import ScoringJob, run_scoring_job  # noqa: E402
from service.scoring.ray_engine import _canonical_slices  # noqa: E402


def test_canonical_slices_cut_runs_at_batch_boundaries_and_gaps() -> None:
    rows = np.array([60, 61, 62, 63, 64, 65, 90, 91, 127, 128])
    slices = _canonical_slices(rows, 32)
    assert [rows[s].tolist() for s in slices] == [[60, 61, 62, 63], [64, 65], [90, 91], [127], [128]]


def test_score_command_engine_ray_matches_local_engine_and_direct_ort_on_a_ragged_npz(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any, ray_instance: None,
        direct_ort: Callable[..., np.ndarray]) -> None:
    # one Ray run covers: actor pool of 2, several read tasks, a compressed .npz member streamed
    # by each task, a ragged last batch (333 = 6 * 50 + 33), a non-default output
    x = rng.normal(size=(333, 8, 8, 1))
    np.savez_compressed(tmp_path / "x.npz", images=x, ids=np.arange(333))
    common = [str(digits_model.path), str(tmp_path / "x.npz"), "--key", "images", "--batch-size", "50",
              "--output-name", "logits", "--no-progress"]
    assert main(["score", *common, "-o", str(tmp_path / "ray.npy"), "--engine", "ray", "--actors", "2"]) == 0
    assert main(["score", *common, "-o", str(tmp_path / "local.npy")]) == 0
    scores = np.load(tmp_path / "ray.npy")
    np.testing.assert_array_equal(scores, direct_ort(digits_model.path, x, 50, "logits"))
    np.testing.assert_array_equal(scores, np.load(tmp_path / "local.npy"))
    summary = json.loads((tmp_path / "ray.summary.json").read_text())
    assert summary["count"] == 333 and summary["engine"] == "ray" and summary["extra"]["actors"] == 2


def test_score_with_ray_raises_the_workers_contract_error_and_leaves_no_output(
        tmp_path: Path, rng: np.random.Generator, digits_model: Any, ray_instance: None) -> None:
    x = rng.normal(size=(40, 8, 8, 1)).astype(np.float32)
    x[25, 0, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    job = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", batch_size=10,
                     engine="ray", actors=1)
    with pytest.raises(NonFiniteInputError, match=r"rows 20\.\.29: expected finite values"):
        run_scoring_job(job)
    assert not list(tmp_path.glob("y.*"))
