"""Run in a child process under a non-TensorFlow backend by tests/models/test_backends.py.

Not collected by a plain ``pytest`` run (the name does not start with ``test_``): it needs the
exchange folder that the parent filled on TensorFlow (``LC2D_BACKEND_EXCHANGE``). Here, under the
child's backend, the files of the backends before it load with identical weights and outputs;
this backend's own models, a model trained with ``lc2d train`` and ONNX exports go back into the
folder for the parent (and the next backend) to check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import onnx
import pytest

from lc2d.cli import main
from tests.models.backends import (
    EXCHANGE_ENV,
    RTOL,
    current_backend,
    load_exchange_models,
    save_exchange_models,
)


@pytest.fixture(scope="module")
def exchange() -> Path:
    folder = os.environ.get(EXCHANGE_ENV)
    if not folder or not Path(folder).is_dir():
        pytest.fail(f"{EXCHANGE_ENV} must name the folder tests/models/test_backends.py fills; "
                    f"received {folder!r}")
    return Path(folder)


def test_keras_files_of_earlier_backends_load_with_identical_weights_and_outputs(exchange):
    loaded = load_exchange_models(exchange)
    assert {p.path.name for p in loaded} >= {f"tensorflow-impl{i}.keras" for i in (1, 2, 3)}
    for result in loaded:
        assert result.weights_equal, result.path.name
        assert result.output_error <= RTOL, (result.path.name, result.output_error)


def test_models_built_here_are_saved_for_the_other_backends(exchange):
    paths = save_exchange_models(exchange, seed=sum(map(ord, current_backend())))
    assert all(p.is_file() and p.with_suffix(".npz").is_file() for p in paths)


@pytest.mark.parametrize("implementation", (1, 2, 3))
def test_export_here_writes_the_graph_tensorflow_writes(implementation, exchange, tmp_path):
    # The graph (nodes and weights) must not depend on the backend the exporter ran on; the
    # metadata differs only in the parity error measured by each backend.
    source = exchange / f"tensorflow-impl{implementation}.keras"
    target = tmp_path / "here.onnx"
    assert main(["export", str(source), "-o", str(target)]) == 0
    ours = onnx.load(str(target)).graph
    theirs = onnx.load(str(source.with_suffix(".onnx"))).graph
    assert ours.SerializeToString() == theirs.SerializeToString()


def test_lc2d_train_here_learns_and_saves_a_model(exchange, tmp_path, capsys):
    backend, rng = current_backend(), np.random.default_rng(5)
    data = tmp_path / "user.npz"
    x = rng.random((120, 6, 6, 2)).astype("float32")
    np.savez(data, x=x, y=(x[:, 2, 2, 0] > 0.5).astype(int))
    out, report = exchange / f"{backend}-trained.keras", tmp_path / "report.json"
    assert main(["train", "--dataset", str(data), "--epochs", "4", "--implementation", "3",
                 "--out", str(out), "--report", str(report)]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    summary = json.loads(report.read_text())
    assert summary["backend"] == backend
    assert summary["history"]["loss"][-1] < summary["history"]["loss"][0]
    # this backend's outputs of the saved model, for the parent's export to match
    model = keras.saving.load_model(out)
    np.savez(out.with_suffix(".npz"), x=x[:7], y=keras.ops.convert_to_numpy(model(x[:7])))
