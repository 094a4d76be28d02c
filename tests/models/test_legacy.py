"""Legacy import: tf_keras .h5 files rebuilt on Keras 3 and compared with tf_keras's own outputs.

tf_keras is the oracle: each test builds a model in tf_keras, gives it random weights scaled so
that activations stay O(1) (no dead ReLU stacks, no constant outputs), saves it as .h5, imports
it, and compares predictions on random inputs. Tolerance: 1e-5 of the largest output (relative).
"""

from __future__ import annotations

import itertools
import json

import h5py
import keras
import numpy as np
import pytest

from lc2d.cli import main
from models import LocallyConnected2D, model_labels
from models.comparison import relative_error
from models.legacy import (
    LegacyImportError,
    UnsupportedLegacyLayersError,
    compare_with_tf_keras,
    import_legacy,
    read_legacy_h5,
)

tf_keras = pytest.importorskip("tf_keras")
L = tf_keras.layers
RTOL = 1e-5
SMALL_DEEPFACE = {"classes": 7, "input_shape": (72, 72, 3)}  # 71x71 is the smallest that fits


def he_randomize(model, rng: np.random.Generator) -> None:
    """Random weights with variance 2 / fan-in; fan-in from the layer, not the kernel's rank."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        fan_in = layer.input_shape[-1] if isinstance(layer, L.Dense) else None
        if isinstance(layer, (L.Conv2D, L.LocallyConnected2D)):
            channels = layer.input_shape[1 if layer.data_format == "channels_first" else -1]
            fan_in = int(np.prod(layer.kernel_size)) * channels
        scale = np.sqrt(2.0 / fan_in) if fan_in else 1.0
        new = [rng.standard_normal(w.shape) * scale for w in weights[:1]]
        new += [rng.uniform(0.0, 0.2, w.shape) for w in weights[1:]]
        layer.set_weights([w.astype("float32") for w in new])


def predict(model, x: np.ndarray) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def assert_informative(outputs: np.ndarray) -> None:
    """The outputs vary across instances: a comparison on them can fail."""
    assert np.std(outputs, axis=0).max() > 1e-3 * np.abs(outputs).max()


def tf_keras_deepface(implementation: int, classes: int, input_shape: tuple[int, int, int]):
    relu = "relu"
    return tf_keras.Sequential([
        tf_keras.Input(shape=input_shape),
        L.Conv2D(32, (11, 11), activation=relu, name="C1"),
        L.MaxPooling2D(pool_size=(3, 3), strides=2, padding="same", name="M2"),
        L.Conv2D(16, (9, 9), activation=relu, name="C3"),
        L.LocallyConnected2D(16, (9, 9), activation=relu, implementation=implementation, name="L4"),
        L.LocallyConnected2D(16, (7, 7), strides=2, activation=relu, implementation=implementation,
                             name="L5"),
        L.LocallyConnected2D(16, (5, 5), activation=relu, implementation=implementation, name="L6"),
        L.Flatten(name="F0"),
        L.Dense(4096, activation=relu, name="F7"),
        L.Dropout(rate=0.5, name="D0"),
        L.Dense(classes, activation="softmax", name="F8"),
    ], name="DeepFace")


@pytest.fixture(scope="module")
def small_deepface(tmp_path_factory):
    """tf_keras DeepFace-shaped model (implementation 1) saved both ways, and its outputs."""
    directory = tmp_path_factory.mktemp("deepface")
    rng = np.random.default_rng(152)
    model = tf_keras_deepface(1, **SMALL_DEEPFACE)
    he_randomize(model, rng)
    x = rng.standard_normal((3, *SMALL_DEEPFACE["input_shape"])).astype("float32")
    full, weights = directory / "deepface.h5", directory / "deepface_weights.h5"
    model.save(full)
    model.save_weights(weights)
    expected = np.asarray(model(x, training=False))
    assert_informative(expected)
    return {"full": full, "weights": weights, "x": x, "expected": expected}


GRID = list(itertools.product((1, 2, 3), ("channels_last", "channels_first")))


@pytest.mark.parametrize(("implementation", "data_format"), GRID)
def test_import_sequential_lc2d_model_matches_tf_keras(implementation, data_format, tmp_path, rng):
    shape = (3, 8, 7) if data_format == "channels_first" else (8, 7, 3)
    model = tf_keras.Sequential([
        tf_keras.Input(shape=shape),
        L.LocallyConnected2D(4, (3, 2), strides=(1, 2), activation="relu", data_format=data_format,
                             implementation=implementation, name="local"),
        L.Flatten(data_format=data_format, name="flatten"),
        L.Dense(5, name="logits"),
    ])
    he_randomize(model, rng)
    path = tmp_path / "model.h5"
    model.save(path)
    x = rng.standard_normal((6, *shape)).astype("float32")
    expected = np.asarray(model(x))
    assert_informative(expected)

    imported, report = import_legacy(path)

    local = imported.get_layer("local")
    assert isinstance(local, LocallyConnected2D)
    assert (local.implementation, local.data_format) == (implementation, data_format)
    assert relative_error(predict(imported, x), expected) <= RTOL
    assert report.verified and report.max_relative_error <= RTOL


def test_import_functional_model_with_branches_matches_tf_keras(tmp_path, rng):
    inputs = tf_keras.Input(shape=(6, 6, 2), name="image")
    local = L.LocallyConnected2D(3, 3, implementation=3, name="local")(inputs)
    flat = L.Flatten(name="flat")(local)
    joined = L.Add(name="add")([L.Dense(4, name="a")(flat), L.Dense(4, name="b")(flat)])
    outputs = L.Activation("tanh", name="out")(L.BatchNormalization(name="bn")(joined))
    model = tf_keras.Model(inputs, outputs)
    he_randomize(model, rng)
    path = tmp_path / "functional.h5"
    model.save(path)
    x = rng.standard_normal((5, 6, 6, 2)).astype("float32")

    imported, report = import_legacy(path)

    assert report.kind == "full-model" and report.architecture == "Functional"
    assert relative_error(predict(imported, x), np.asarray(model(x))) <= RTOL


def test_import_full_model_small_deepface_keeps_names_and_outputs(small_deepface):
    imported, report = import_legacy(small_deepface["full"])
    assert [layer.name for layer in imported.layers] == [
        "C1", "M2", "C3", "L4", "L5", "L6", "F0", "F7", "D0", "F8"]
    assert relative_error(predict(imported, small_deepface["x"]), small_deepface["expected"]) <= RTOL
    assert report.verified


def test_import_weights_only_small_deepface_maps_layers_by_name(small_deepface):
    imported, report = import_legacy(small_deepface["weights"], architecture="deepface",
                                     builder_kwargs=SMALL_DEEPFACE)
    assert report.kind == "weights-only"
    assert imported.get_layer("L4").implementation == 1  # detected from the kernel's rank
    assert relative_error(predict(imported, small_deepface["x"]), small_deepface["expected"]) <= RTOL
    assert report.verified


def test_comparison_detects_a_changed_weight(small_deepface):
    imported, _ = import_legacy(small_deepface["full"], verify=False)
    kernel, bias = imported.get_layer("L5").get_weights()
    imported.get_layer("L5").set_weights([kernel * 1.01, bias])
    assert compare_with_tf_keras(imported, small_deepface["full"], weights_only=False) > 1e-4


def test_weights_only_with_wrong_classes_lists_the_mismatch(small_deepface):
    with pytest.raises(LegacyImportError, match=r"'F8' expects weights \[\(4096, 9\)"):
        import_legacy(small_deepface["weights"], architecture="deepface",
                      builder_kwargs={"classes": 9, "input_shape": (72, 72, 3)})


def test_weights_only_without_architecture_raises(small_deepface):
    with pytest.raises(LegacyImportError, match="weights only"):
        import_legacy(small_deepface["weights"])


def test_unsupported_layers_are_listed_at_once(tmp_path):
    model = tf_keras.Sequential([
        tf_keras.Input(shape=(8, 2)),
        L.LocallyConnected1D(2, 3, name="lc1d"),
        L.Lambda(lambda t: t * 2.0, name="double"),
        L.GRU(3, name="gru"),
        L.Dense(2, name="dense"),
    ])
    path = tmp_path / "unsupported.h5"
    model.save(path)
    with pytest.raises(UnsupportedLegacyLayersError) as err:
        import_legacy(path)
    assert [name for name, _, _ in err.value.layers] == ["lc1d", "double", "gru"]
    for name in ("LocallyConnected1D", "Lambda", "GRU"):
        assert name in str(err.value)


def test_read_legacy_h5_refuses_a_file_that_is_not_hdf5(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(LegacyImportError, match="not HDF5"):
        read_legacy_h5(path)


def test_cli_import_legacy_writes_a_keras_model_with_labels(small_deepface, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"person {i}" for i in range(7)) + "\n")
    out = tmp_path / "deepface.keras"
    code = main(["import-legacy", str(small_deepface["full"]), "-o", str(out), "--labels",
                 str(labels), "--no-verify"])
    assert code == 0, capsys.readouterr().err
    loaded = keras.saving.load_model(out)
    assert model_labels(loaded) == [f"person {i}" for i in range(7)]
    assert relative_error(predict(loaded, small_deepface["x"]), small_deepface["expected"]) <= RTOL


@pytest.mark.parametrize("arguments", [
    ["missing.h5", "-o", "m.keras"],
    ["WEIGHTS", "-o", "m.keras"],
    ["WEIGHTS", "-o", "m.keras", "--classes", "7"],
    ["WEIGHTS", "-o", "m.h5", "--architecture", "deepface"],
])
def test_cli_import_legacy_bad_input_exits_2_with_one_line(arguments, small_deepface, tmp_path,
                                                           capsys):
    argv = [str(small_deepface["weights"]) if a == "WEIGHTS" else a for a in arguments]
    argv = [str(tmp_path / a) if a.endswith((".keras", "missing.h5", "m.h5")) else a for a in argv]
    assert main(["import-legacy", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lc2d import-legacy: error:") and "\n" not in err, err


@pytest.mark.parametrize("implementation", (2, 3))
def test_weights_only_import_detects_the_stored_implementation(implementation, tmp_path, rng):
    model = tf_keras.Sequential([
        tf_keras.Input(shape=(8, 8, 1)),
        L.LocallyConnected2D(32, 3, activation="relu", implementation=implementation, name="local"),
        L.Flatten(name="flatten"),
        L.Dense(64, activation="relu", name="hidden"),
        L.Dense(10, activation="softmax", name="probabilities"),
    ])
    he_randomize(model, rng)
    path = tmp_path / "digits_weights.h5"
    model.save_weights(path)
    x = rng.standard_normal((3, 8, 8, 1)).astype("float32")

    imported, report = import_legacy(path, architecture="digits_classifier")

    assert imported.get_layer("local").implementation == implementation
    assert relative_error(predict(imported, x), np.asarray(model(x))) <= RTOL
    assert report.verified


def test_unknown_keras_2_config_keys_are_dropped_and_reported(tmp_path, rng):
    model = tf_keras.Sequential([tf_keras.Input(shape=(5, 5, 1)),
                                 L.LocallyConnected2D(2, 3, name="local"), L.Flatten(name="flat")])
    he_randomize(model, rng)
    path = tmp_path / "extra.h5"
    model.save(path)
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        config["config"]["layers"][1]["config"]["keras2_only_option"] = True
        h5.attrs["model_config"] = json.dumps(config)
    x = rng.standard_normal((2, 5, 5, 1)).astype("float32")

    imported, report = import_legacy(path, verify=False)  # tf_keras itself rejects the key

    assert report.dropped_config_keys == {"local": ["keras2_only_option"]}
    assert relative_error(predict(imported, x), np.asarray(model(x))) <= RTOL


def test_cli_import_legacy_compares_shapes_before_building_dense_kernels(tmp_path, rng, monkeypatch,
                                                                        capsys):
    import models.legacy as legacy

    # digits-sized weights saved with implementation 2; seed_example at implementation 2 would
    # allocate 6 GiB of dense kernels before the shapes could disagree.
    model = tf_keras.Sequential([tf_keras.Input(shape=(8, 8, 1)),
                                 L.LocallyConnected2D(4, 3, implementation=2, name="lc1")])
    path = tmp_path / "weights.h5"
    model.save_weights(path)
    built = []
    real = legacy.BUILDERS["seed_example"]
    monkeypatch.setitem(legacy.BUILDERS, "seed_example",
                        lambda **kwargs: built.append(kwargs["implementation"]) or real(**kwargs))
    out = tmp_path / "m.keras"
    assert main(["import-legacy", str(path), "-o", str(out), "--architecture", "seed_example"]) == 2
    err = capsys.readouterr().err.strip()
    # implementation 2's kernel layout: (input rows, cols, channels, output rows, cols, filters)
    assert "\n" not in err and "'lc1' expects weights [(32, 32, 3, 30, 30, 64), (30, 30, 64)]" in err
    assert "'lc2' has no weights in the file" in err
    assert built == [1]  # only the cheap probe was built
