"""Whole models: the builders' models and the standard layers export and match Keras."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.export.onnx_checks import assert_matches_keras, random_input


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@pytest.mark.parametrize("implementation", [1, 3])
def test_export_seed_example_matches_keras(implementation: int, tmp_path: Path,
                                           export_rng: np.random.Generator) -> None:
    from export import to_onnx
    from models.builders import seed_example

    model = seed_example(implementation=implementation)
    path = tmp_path / "seed.onnx"
    report = to_onnx(model, path)
    per_layer = {1: 8, 3: 7}[implementation]  # local: 8 nodes with bias; sparse: 7
    assert [layer["nodes"] for layer in report.layers] == [per_layer, per_layer]
    assert report.nodes == 2 * per_layer
    assert_matches_keras(model, path, random_input(export_rng, model, batch=2))


@pytest.mark.parametrize("lowering", ["implementation", "local", "dense", "sparse"])
def test_export_digits_classifier_matches_keras(lowering: str, tmp_path: Path,
                                                export_rng: np.random.Generator) -> None:
    from export import ExportOptions, to_onnx
    from models.builders import digits_classifier

    model = digits_classifier(implementation=2, labels=[f"digit {i}" for i in range(10)])
    path = tmp_path / "digits.onnx"
    to_onnx(model, path, ExportOptions(policy=lowering))
    assert_matches_keras(model, path, random_input(export_rng, model, batch=7))
    meta = _metadata(path)
    assert json.loads(meta["lc2d.labels"]) == [f"digit {i}" for i in range(10)]
    assert json.loads(meta["lc2d.output_names"]) == ["probabilities"]


def _deepface_logits(implementation: int) -> Any:
    """A DeepFace-shaped model at 72×72 (the smallest size every layer fits), 5 classes.

    The random-weight softmax saturates to exact 0/1, which would hide errors, so F8's
    activation is made linear: the comparison is on logits.
    """
    import keras

    from models.builders import deepface

    model = deepface(classes=5, input_shape=(72, 72, 3), implementation=implementation)
    model.get_layer("F8").activation = keras.activations.get("linear")
    return model


@pytest.mark.parametrize("implementation", [1, 3])
def test_export_small_deepface_matches_keras(implementation: int, tmp_path: Path,
                                             export_rng: np.random.Generator) -> None:
    from export import to_onnx

    model = _deepface_logits(implementation)
    path = tmp_path / "deepface.onnx"
    report = to_onnx(model, path)
    assert [layer["name"] for layer in report.layers] == ["L4", "L5", "L6"]
    assert all(layer["nodes"] <= 12 for layer in report.layers)
    assert_matches_keras(model, path, random_input(export_rng, model, batch=2))


def _image_stack() -> Any:
    """Every standard image layer, channels_last (TensorFlow's CPU convolutions need it)."""
    import keras

    return keras.Sequential([
        keras.Input((13, 11, 3), name="image"),
        keras.layers.Rescaling(0.5, offset=0.1),
        keras.layers.ZeroPadding2D(((1, 0), (0, 2))),
        keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu",
                            bias_initializer="random_normal"),
        keras.layers.BatchNormalization(moving_mean_initializer="random_normal",
                                        gamma_initializer="random_uniform", beta_initializer="random_normal"),
        keras.layers.MaxPooling2D(3, strides=2, padding="same"),
        keras.layers.Conv2D(6, (2, 3), padding="same", dilation_rate=(1, 2), activation="gelu"),
        keras.layers.AveragePooling2D(2, strides=1, padding="same"),
        keras.layers.ReLU(max_value=1.5),
        keras.layers.Flatten(),
        keras.layers.Reshape((-1, 3)),
        keras.layers.Permute((2, 1)),
        keras.layers.Dense(5, activation="swish", bias_initializer="random_normal"),
        keras.layers.LeakyReLU(0.1),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(7),
        keras.layers.Activation("softplus"),
        keras.layers.Softmax(),
    ], name="image_stack")


def _channels_first_stack() -> Any:
    """The layers whose channels_first semantics Keras can run on CPU: padding, LC2D, BN, Flatten."""
    import keras

    from models.locally_connected import LocallyConnected2D

    return keras.Sequential([
        keras.Input((3, 9, 8), name="image"),
        keras.layers.ZeroPadding2D((1, 2), data_format="channels_first"),
        LocallyConnected2D(4, 3, strides=2, data_format="channels_first", activation="elu",
                           bias_initializer="random_normal"),
        keras.layers.BatchNormalization(axis=1, moving_mean_initializer="random_normal",
                                        gamma_initializer="random_uniform", beta_initializer="random_normal"),
        keras.layers.Flatten(data_format="channels_first"),
        keras.layers.Dense(6, activation="selu"),
    ], name="channels_first_stack")


@pytest.mark.parametrize("build", [_image_stack, _channels_first_stack])
def test_export_standard_layers_match_keras(build: Any, tmp_path: Path,
                                            export_rng: np.random.Generator) -> None:
    from export import to_onnx

    model = build()
    path = tmp_path / "standard.onnx"
    to_onnx(model, path)
    assert_matches_keras(model, path, random_input(export_rng, model, batch=3))


@pytest.mark.parametrize("opset", [17, 18])
def test_export_global_pooling_matches_keras_at_opset(opset: int, tmp_path: Path,
                                                      export_rng: np.random.Generator) -> None:
    import keras

    from export import ExportOptions, to_onnx
    from models.locally_connected import LocallyConnected2D

    inputs = keras.Input((9, 9, 2), name="x")
    hidden = LocallyConnected2D(4, 3, implementation=3, bias_initializer="random_normal")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3)(pooled), name="functional")
    path = tmp_path / "gap.onnx"
    report = to_onnx(model, path, ExportOptions(opset=opset, policy="sparse"))
    assert onnx.load(str(path)).opset_import[0].version == opset
    assert report.opset == opset
    assert_matches_keras(model, path, random_input(export_rng, model))

    gmp = keras.Sequential([keras.Input((9, 9, 2)), keras.layers.GlobalMaxPooling2D(keepdims=True)])
    to_onnx(gmp, tmp_path / "gmp.onnx", ExportOptions(opset=opset))
    assert_matches_keras(gmp, tmp_path / "gmp.onnx", random_input(export_rng, gmp))
