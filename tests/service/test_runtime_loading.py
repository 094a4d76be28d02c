"""service.runtime: provider choice, loading, running against a NumPy reference."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from service.errors import ModelLoadError
from service.providers import CPU
from service.runtime import load_model


def test_load_model_runs_like_the_numpy_reference(tiny_model, rng: np.random.Generator) -> None:
    model = load_model(tiny_model.path, device="cpu", threads=1)
    batch = rng.normal(size=(5, 8, 8, 1)).astype(np.float32)
    outputs = model.run(model.contract.validate_batch(batch))
    assert list(outputs) == ["probabilities"] and model.name == "tiny"
    assert model.providers == [CPU]
    np.testing.assert_allclose(outputs["probabilities"], tiny_model.reference(batch), rtol=1e-5, atol=1e-6)
    assert model.output_device is None  # I/O binding is for GPU sessions


def test_run_with_io_binding_matches_the_plain_run(tiny_model, rng: np.random.Generator) -> None:
    # The bound path is what a CUDA session takes; bound to CPU memory it runs here too.
    model = load_model(tiny_model.path, device="cpu", threads=1)
    batch = rng.normal(size=(7, 8, 8, 1)).astype(np.float32)
    plain = model.run(batch)["probabilities"]
    model.output_device = "cpu"
    bound = model.run(batch)["probabilities"]
    np.testing.assert_array_equal(bound, plain)
    np.testing.assert_allclose(bound, tiny_model.reference(batch), rtol=1e-5, atol=1e-6)


def test_load_model_without_metadata_uses_the_graph_signature(plain_model, rng: np.random.Generator) -> None:
    model = load_model(plain_model.path, device="cpu")
    assert model.contract.instance_shape == (4, 4, 3) and model.contract.labels is None
    batch = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(model.run(batch)["probabilities"], plain_model.reference(batch),
                               rtol=1e-5, atol=1e-6)


def test_load_model_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "absent.onnx")


def test_load_model_reports_a_corrupt_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x00\x01 not a protobuf")
    with pytest.raises(ModelLoadError) as info:
        load_model(path)
    assert "is not a loadable ONNX model" in str(info.value) and "\n" not in str(info.value)


def test_service_imports_neither_tensorflow_nor_keras_nor_ray() -> None:
    # ray is an optional extra: only `lc2d serve --ray` and `--engine ray` import it
    code = ("import sys, service.app, service.runtime, service.contract, service.ray_cluster, "
            "lc2d.commands.serve, lc2d.commands.score; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'ray')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=60)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("spin", "set_key", "unset_key"), [
    (False, "session.intra_op.allow_spinning", "session.force_spinning_stop"),
    (True, "session.force_spinning_stop", "session.intra_op.allow_spinning"),
])
def test_load_model_spins_only_during_runs_or_never(tiny_model, spin: bool, set_key: str,
                                                    unset_key: str) -> None:
    options = load_model(tiny_model.path, "cpu", spin=spin).session.get_session_options()
    assert options.get_session_config_entry(set_key) == ("1" if spin else "0")
    with pytest.raises(RuntimeError, match="does not have configuration"):  # left at the default
        options.get_session_config_entry(unset_key)
