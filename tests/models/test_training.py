"""Training: the digits split, .npz validation, short runs that learn, and `lc2d train`."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from lc2d.cli import main
from models import model_labels
from models.datasets import DatasetError, dataset_from_arrays, load_digits, load_npz
from models.training import train

CHANCE = 0.1  # ten balanced digit classes


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_load_digits_splits_all_1797_images_disjointly_and_deterministically(digits):
    sizes = [len(s.y) for s in (digits.train, digits.validation, digits.test)]
    assert sum(sizes) == 1797 and min(sizes) > 200
    again = load_digits()
    np.testing.assert_array_equal(again.test.x, digits.test.x)
    rows = {tuple(x.ravel()) for x in digits.test.x}
    train_rows = {tuple(x.ravel()) for x in digits.train.x}
    # sklearn's digits contain a few exact duplicates; disjoint indices leave almost no overlap.
    assert len(rows & train_rows) <= 5


def test_load_digits_scales_pixels_to_unit_range_with_string_labels(digits):
    assert digits.input_shape == (8, 8, 1)
    assert digits.train.x.dtype == np.float32
    assert digits.train.x.min() == 0.0 and digits.train.x.max() == 1.0
    assert digits.labels == [str(d) for d in range(10)]
    assert digits.input_scale == 1 / 16


@pytest.mark.parametrize("implementation", (1, 2, 3))
def test_train_two_epochs_learns_far_above_chance(digits, implementation):
    model, report = train(digits, implementation=implementation, epochs=2, verbose=0)
    assert report.test_accuracy > 5 * CHANCE
    assert report.val_accuracy > 5 * CHANCE
    assert report.implementation == implementation and report.epochs == 2
    assert report.parameters == model.count_params()
    assert model_labels(model) == digits.labels
    # the reported accuracy is the model's own, recomputed here
    predicted = np.argmax(keras.ops.convert_to_numpy(model(digits.test.x)), axis=1)
    assert report.test_accuracy == pytest.approx(float(np.mean(predicted == digits.test.y)))


def test_train_same_seed_gives_same_weights(digits):
    small = dataset_from_arrays("small", {"x": digits.train.x[:200], "y": digits.train.y[:200]})
    first, _ = train(small, epochs=1, seed=7, verbose=0)
    second, _ = train(small, epochs=1, seed=7, verbose=0)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_train_zero_epochs_raises_value_error(digits):
    with pytest.raises(ValueError, match="epochs"):
        train(digits, epochs=0)


def test_npz_3d_images_get_a_channel_axis_and_sorted_classes(tmp_path: Path, rng):
    path = tmp_path / "data.npz"
    np.savez(path, x=rng.random((30, 5, 6)), y=rng.choice([7, 3, 11], 30))
    dataset = load_npz(path)
    assert dataset.input_shape == (5, 6, 1)
    assert dataset.labels == ["3", "7", "11"]
    assert set(np.concatenate([dataset.train.y, dataset.test.y, dataset.validation.y])) <= {0, 1, 2}


def test_npz_with_label_names_keeps_them(tmp_path: Path, rng):
    path = tmp_path / "named.npz"
    np.savez(path, x=rng.random((20, 4, 4, 2)), y=rng.integers(0, 2, 20), labels=["cat", "dog"])
    assert load_npz(path).labels == ["cat", "dog"]


BAD_ARRAYS = [
    ({"x": np.zeros((20, 8)), "y": np.arange(20) % 2}, "3-D or 4-D"),
    ({"x": np.zeros((20, 8, 8)), "y": np.arange(20) % 2 + 0.5}, "integer"),
    ({"x": np.zeros((20, 8, 8)), "y": np.arange(19) % 2}, "one label per image"),
    ({"x": np.zeros((20, 8, 8)), "y": np.zeros(20, int)}, "at least 2 classes"),
    ({"x": np.full((20, 8, 8), np.inf), "y": np.arange(20) % 2}, "finite"),
    ({"x": np.zeros((20, 8, 8)), "y": (np.arange(20) % 2).reshape(10, 2)}, "1-D"),
    ({"x": np.zeros((20, 8, 8))}, "missing"),
    ({"x": np.zeros((20, 8, 8)), "y": np.arange(20) % 3, "labels": ["a", "b"]}, "0..1"),
]


@pytest.mark.parametrize(("arrays", "message"), BAD_ARRAYS)
def test_bad_arrays_raise_dataset_error_saying_what(arrays, message):
    with pytest.raises(DatasetError, match=message):
        dataset_from_arrays("bad", arrays)


def test_several_problems_are_reported_in_one_message():
    with pytest.raises(DatasetError) as err:
        dataset_from_arrays("bad", {"x": np.full((5, 8, 8, 1, 1), np.nan), "y": np.ones(5)})
    assert "3-D or 4-D" in str(err.value) and "finite" in str(err.value)
    assert "integer" in str(err.value)


def write_bad_inputs(directory: Path) -> dict[str, Path]:
    paths = {name: directory / f"{name}.npz" for name in ("shape", "labels", "text", "keys")}
    np.savez(paths["shape"], x=np.zeros((20, 8)), y=np.arange(20) % 2)
    np.savez(paths["labels"], x=np.zeros((20, 8, 8)), y=np.zeros(20, int))
    paths["text"].write_text("not an archive")
    np.savez(paths["keys"], images=np.zeros((20, 8, 8)))
    npy = directory / "array.npy"
    np.save(npy, np.zeros(3))
    return {**paths, "npy": npy, "missing": directory / "missing.npz"}


def test_cli_train_bad_datasets_exit_2_with_one_line(tmp_path: Path, capsys):
    for name, path in write_bad_inputs(tmp_path).items():
        code = main(["train", "--dataset", str(path), "--out", str(tmp_path / "m.keras")])
        err = capsys.readouterr().err.strip()
        assert code == 2, name
        assert err.startswith("lc2d train: error: --dataset:") and "\n" not in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "m.keras").exists()


def test_cli_train_out_without_keras_suffix_exits_2(tmp_path: Path, capsys):
    assert main(["train", "--out", str(tmp_path / "m.h5")]) == 2
    assert ".keras" in capsys.readouterr().err


def test_cli_train_writes_model_report_and_prints_test_accuracy(tmp_path: Path, capsys, rng):
    data = tmp_path / "user.npz"
    x = rng.random((60, 6, 6, 2)).astype("float32")
    np.savez(data, x=x, y=(x[:, 0, 0, 0] > 0.5).astype(int))
    out, report_path = tmp_path / "out" / "m.keras", tmp_path / "out" / "m.json"
    code = main(["train", "--dataset", str(data), "--epochs", "2", "--implementation", "3",
                 "--seed", "5", "--out", str(out), "--report", str(report_path)])
    printed = capsys.readouterr().out
    assert code == 0 and "test accuracy:" in printed
    report = json.loads(report_path.read_text())
    for key in ("test_accuracy", "val_accuracy", "epochs", "seed", "implementation", "parameters",
                "wall_time_s", "versions"):
        assert key in report
    assert (report["epochs"], report["seed"], report["implementation"]) == (2, 5, 3)
    assert "keras" in report["versions"] and "tensorflow" in report["versions"]
    loaded = keras.saving.load_model(out)
    assert model_labels(loaded) == ["0", "1"]
    assert loaded.input_shape == (None, 6, 6, 2)
