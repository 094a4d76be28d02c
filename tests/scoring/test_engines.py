"""The engine table, and the Ray driver reading the contract without an ONNX Runtime session."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.scoring import ScoringJob
from service.scoring.engines import ENGINES, EngineName, LocalEngine, RayEngine


def test_engine_table_names_are_the_engine_choices() -> None:
    assert list(ENGINES) == list(typing.get_args(EngineName))


def test_ray_engine_reads_the_contract_without_a_session(tmp_path: Path, digits_model: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    import onnxruntime

    job = ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy", engine="ray")
    from_session = LocalEngine(job).contract

    def no_session(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Ray driver opened an ONNX Runtime session")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    engine = RayEngine(job)
    assert engine.contract == from_session
    assert engine.contract.output_names == ("probabilities", "logits")
    assert engine.providers[-1] == "CPUExecutionProvider"


def test_local_engine_scores_like_direct_onnx_runtime(tmp_path: Path, digits_model: Any, rng,
                                                      direct_ort) -> None:
    from service.scoring.sources import open_source

    x = rng.normal(size=(7, 8, 8, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    engine = ENGINES["local"](ScoringJob(digits_model.path, tmp_path / "x.npy", tmp_path / "y.npy",
                                         batch_size=3))
    parts: dict[int, np.ndarray] = {}
    count = engine.score(open_source(tmp_path / "x.npy", engine.contract), "logits",
                         lambda start, y: parts.__setitem__(start, y), None)
    assert count == 7 and sorted(parts) == [0, 3, 6]
    np.testing.assert_array_equal(np.concatenate([parts[k] for k in sorted(parts)]),
                                  direct_ort(digits_model.path, x, 3, "logits"))
