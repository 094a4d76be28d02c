"""The layer on JAX and PyTorch: its suite in a child process per backend, files exchanged both ways.

This process (TensorFlow) saves models of every implementation and exports them; each backend in
``LC2D_TEST_BACKENDS`` (``make test``: jax; ``make test-backends``: jax,torch) then runs the
backend-neutral layer suite in a child pytest process, loads the files of the backends before it
and saves its own (tests/models/backend_exchange.py); with two or more, the first one then loads
the files of the others too, so every pair of backends is covered both ways. Back here, the files
saved under the other backends load under TensorFlow with identical weights and outputs, export
to ONNX with the outputs their backend computed, and so does a model trained by ``lc2d train``
under each backend.
Tolerance: 1e-5 normwise relative error (``RTOL``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export import to_onnx
from lc2d.cli import main
from tests.models.backends import (
    RTOL,
    ChildRun,
    child_grid,
    load_exchange_models,
    relative_error,
    requested_backends,
    run_suite,
    save_exchange_models,
)

BACKENDS = requested_backends()
CHILD_TIMEOUT_S = 1500  # per backend; `make test-backends` runs whole grids
pytestmark = pytest.mark.timeout(2 * CHILD_TIMEOUT_S + 600)  # the first test waits for every child


@pytest.fixture(scope="module")
def exchange(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backend-exchange")


@pytest.fixture(scope="module")
def child_runs(exchange) -> dict[str, ChildRun]:
    for path in save_exchange_models(exchange, seed=20261201):
        to_onnx(_load(path), path.with_suffix(".onnx"))
    return {backend: run_suite(backend, exchange, child_grid(), CHILD_TIMEOUT_S) for backend in BACKENDS}


def _load(path: Path):
    import keras

    return keras.saving.load_model(path)


def test_at_least_one_other_backend_is_requested():
    assert BACKENDS and "tensorflow" not in BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_suite_passes_under_backend(backend, child_runs):
    run = child_runs[backend]
    assert run.returncode == 0 and run.passed > 0 and not run.not_passed, run.output[-3000:]


if len(BACKENDS) > 1:  # `make test-backends`: the first child ran before the others had saved files
    def test_first_backend_loads_the_files_saved_by_the_backends_after_it(child_runs, exchange):
        later = sorted({f"{backend}-impl{i}.keras" for backend in BACKENDS[1:] for i in (1, 2, 3)})
        assert sorted(p.name for p in exchange.glob("*-impl[123].keras") if p.name in later) == later
        run = run_suite(BACKENDS[0], exchange, child_grid(), CHILD_TIMEOUT_S, only="earlier_backends")
        assert run.returncode == 0 and run.passed == 1 and not run.not_passed, run.output[-3000:]


def test_keras_files_saved_under_other_backends_load_under_tensorflow_unchanged(child_runs, exchange):
    loaded = load_exchange_models(exchange)
    assert sorted(p.path.name for p in loaded) == sorted(
        f"{backend}-impl{i}.keras" for backend in child_runs for i in (1, 2, 3))
    for result in loaded:
        assert result.weights_equal, result.path.name
        assert result.output_error <= RTOL, (result.path.name, result.output_error)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keras_files_saved_under_backend_export_to_onnx_with_its_outputs(backend, child_runs, exchange,
                                                                        tmp_path):
    for implementation in (1, 2, 3):
        source = exchange / f"{backend}-impl{implementation}.keras"
        target = tmp_path / f"impl{implementation}.onnx"
        assert main(["export", str(source), "-o", str(target)]) == 0
        saved = np.load(source.with_suffix(".npz"))
        session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        (output,) = session.run(None, {session.get_inputs()[0].name: saved["x"]})
        assert relative_error(output, saved["y"]) <= RTOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_model_trained_under_backend_exports_with_its_outputs(backend, child_runs, exchange, tmp_path):
    source = exchange / f"{backend}-trained.keras"
    target = tmp_path / "trained.onnx"
    assert main(["export", str(source), "-o", str(target)]) == 0
    saved = np.load(source.with_suffix(".npz"))
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {session.get_inputs()[0].name: saved["x"]})
    assert relative_error(probabilities, saved["y"]) <= RTOL
