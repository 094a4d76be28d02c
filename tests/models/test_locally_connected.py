"""LocallyConnected2D: parity with tf_keras, a NumPy reference, and the layer contract.

Tolerances: float32 forward passes agree within 1e-5 of the largest output magnitude
(relative), against tf_keras and against the float64 NumPy reference.

Every test not marked ``tensorflow_only`` also runs under JAX and PyTorch, in a child process
per backend (tests/models/test_backends.py); there the grids may be the covering subset of
tests/models/backends.py.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from models import LocallyConnected2D, convert_kernel
from models.comparison import relative_error
from tests.models import reference
from tests.models.backends import covering, layer_grid

RTOL = 1e-5
IMPLEMENTATIONS = (1, 2, 3)
FORMATS = ("channels_last", "channels_first")
PADDINGS = ("valid", "same")
STRIDES = ((1, 1), (2, 2), (1, 3))
KERNELS = ((3, 3), (2, 3))
SIZE = (7, 5)  # odd, non-square input
CHANNELS, FILTERS = 2, 3


def instance_shape(fmt: str, size: tuple[int, int] = SIZE, channels: int = CHANNELS) -> tuple[int, ...]:
    return (channels, *size) if fmt == "channels_first" else (*size, channels)


def built_layer(**kwargs: object) -> LocallyConnected2D:
    fmt = kwargs.get("data_format", "channels_last")
    layer = LocallyConnected2D(**kwargs)  # type: ignore[arg-type]
    layer.build((None, *instance_shape(str(fmt))))
    return layer


def randomize(layer: keras.layers.Layer, rng: np.random.Generator) -> list[np.ndarray]:
    weights = [rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    return weights


def forward(layer: keras.layers.Layer, x: np.ndarray) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(layer(x)))


GRID = layer_grid(IMPLEMENTATIONS, FORMATS, PADDINGS, STRIDES, KERNELS)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize(("impl", "fmt", "padding", "strides", "kernel"), GRID)
def test_forward_matches_tf_keras_for_identical_weights(impl, fmt, padding, strides, kernel, rng):
    tf_keras = pytest.importorskip("tf_keras")
    # tf_keras refuses padding="same" with implementation 1: compare against its
    # implementation 2 through the kernel conversion instead.
    oracle_impl = 2 if (impl == 1 and padding == "same") else impl
    oracle = tf_keras.layers.LocallyConnected2D(
        FILTERS, kernel, strides=strides, padding=padding.upper(), data_format=fmt,
        implementation=oracle_impl, activation="tanh", bias_initializer="random_normal")
    x = rng.standard_normal((3, *instance_shape(fmt))).astype("float32")
    expected = oracle(x).numpy()
    ours = built_layer(filters=FILTERS, kernel_size=kernel, strides=strides, padding=padding,
                       data_format=fmt, implementation=impl, activation="tanh")
    kernel_w, bias_w = oracle.get_weights()
    ours.set_weights([convert_kernel(kernel_w, ours, impl, oracle_impl), bias_w])
    assert relative_error(forward(ours, x), expected) <= RTOL


@pytest.mark.parametrize(("impl", "fmt", "padding", "strides", "kernel"), GRID)
def test_forward_matches_numpy_definition(impl, fmt, padding, strides, kernel, rng):
    layer = built_layer(filters=FILTERS, kernel_size=kernel, strides=strides, padding=padding,
                        data_format=fmt, implementation=impl)
    kernel_w, bias_w = randomize(layer, rng)
    x = rng.standard_normal((2, *instance_shape(fmt))).astype("float32")
    expected = reference.locally_connected(x, kernel_w, bias_w, impl, FILTERS, kernel, strides,
                                           padding, fmt)
    assert relative_error(forward(layer, x), expected) <= RTOL


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_weights_have_tf_keras_shapes_and_order(impl):
    tf_keras = pytest.importorskip("tf_keras")
    for fmt, padding in itertools.product(FORMATS, ("valid", "same")):
        if impl == 1 and padding == "same":
            continue
        oracle = tf_keras.layers.LocallyConnected2D(
            FILTERS, (3, 2), strides=(2, 1), padding=padding, data_format=fmt, implementation=impl)
        oracle.build((None, *instance_shape(fmt)))
        ours = built_layer(filters=FILTERS, kernel_size=(3, 2), strides=(2, 1), padding=padding,
                           data_format=fmt, implementation=impl)
        assert [w.shape for w in ours.get_weights()] == [w.shape for w in oracle.get_weights()]
        if impl == 3:
            out_idx, in_idx = ours.geometry.sparse_indices()
            assert np.array_equal(np.stack([out_idx, in_idx], 1), np.asarray(oracle.kernel_idxs))
        if impl == 2:
            shape = ours.geometry.kernel_shape(2)
            assert np.array_equal(np.broadcast_to(ours.geometry.connectivity_mask(), shape),
                                  np.broadcast_to(oracle.kernel_mask, shape))


@pytest.mark.slow  # implementation 2's first layer holds a 708 MB dense kernel
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_reference_example_gives_documented_shapes_and_parameters(impl):
    with pytest.warns(UserWarning):  # Keras 3 prefers keras.Input over input_shape=
        first = LocallyConnected2D(64, (3, 3), input_shape=(32, 32, 3), implementation=impl)
    second = LocallyConnected2D(32, (3, 3), implementation=impl)
    if impl == 2:  # the second layer's dense kernel alone would be 5.8 GB: check its shape only
        model = keras.Sequential([first])
        assert second.compute_output_shape(model.output_shape) == (None, 28, 28, 32)
    else:
        model = keras.Sequential([first, second])
        assert model.output_shape == (None, 28, 28, 32)
    assert model.layers[0].output.shape == (None, 30, 30, 64)
    connected = (30 * 30) * (3 * 3 * 3 * 64) + (30 * 30) * 64
    assert connected == 1_612_800
    if impl == 2:  # the full masked dense kernel
        assert model.layers[0].count_params() == 32 * 32 * 3 * 30 * 30 * 64 + 30 * 30 * 64
    else:
        assert model.layers[0].count_params() == connected


@pytest.mark.parametrize(("impl", "fmt", "padding"), covering(IMPLEMENTATIONS, FORMATS, PADDINGS))
def test_output_shape_matches_compute_output_shape(impl, fmt, padding, rng):
    layer = built_layer(filters=FILTERS, kernel_size=(3, 2), strides=(2, 3), padding=padding,
                        data_format=fmt, implementation=impl)
    x = rng.standard_normal((4, *instance_shape(fmt))).astype("float32")
    assert forward(layer, x).shape == layer.compute_output_shape(x.shape)
    assert layer.compute_output_shape((None, *x.shape[1:]))[0] is None


def test_config_round_trip_keeps_every_argument():
    layer = LocallyConnected2D(
        5, 3, strides=2, padding="SAME", data_format="channels_first", activation="relu",
        use_bias=False, kernel_initializer="he_normal", bias_initializer="ones",
        kernel_regularizer="l2", bias_regularizer="l1", activity_regularizer="l1",
        kernel_constraint="non_neg", bias_constraint="max_norm", implementation=3, name="lc")
    config = layer.get_config()
    assert config["kernel_size"] == (3, 3) and config["strides"] == (2, 2)
    assert config["padding"] == "same" and config["implementation"] == 3
    clone = LocallyConnected2D.from_config(config)
    assert clone.get_config() == config


def test_default_data_format_follows_keras_config():
    previous = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        assert LocallyConnected2D(2, 3).data_format == "channels_first"
    finally:
        keras.config.set_image_data_format(previous)
    assert LocallyConnected2D(2, 3).data_format == previous


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_save_and_load_restore_identical_outputs(impl, tmp_path: Path, rng):
    model = keras.Sequential([
        keras.Input((6, 7, 2)),
        LocallyConnected2D(4, (3, 2), strides=(1, 2), padding="same", implementation=impl,
                           activation="relu", bias_initializer="random_normal"),
        LocallyConnected2D(3, 2, implementation=impl),
    ])
    x = rng.standard_normal((3, 6, 7, 2)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # registered: no custom_objects
    assert isinstance(loaded.layers[0], LocallyConnected2D)
    np.testing.assert_array_equal(forward(loaded, x), forward(model, x))


@pytest.mark.parametrize(("impl", "padding"), covering(IMPLEMENTATIONS, PADDINGS))
def test_fit_changes_weights_and_reduces_loss(impl, padding, rng):
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((6, 6, 2)),
        LocallyConnected2D(3, 3, padding=padding, implementation=impl),
        keras.layers.Flatten(),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    x = rng.standard_normal((64, 6, 6, 2)).astype("float32")
    y = (x[:, 1:4, 1:4, :].sum(axis=(1, 2, 3)) * 0.3)[:, None].astype("float32")
    before = model.layers[0].get_weights()[0].copy()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0).history["loss"]
    assert history[-1] < 0.5 * history[0]
    assert not np.allclose(model.layers[0].get_weights()[0], before)


def test_masked_entries_of_implementation_2_never_influence_outputs_or_train(rng):
    layer = built_layer(filters=FILTERS, kernel_size=3, strides=2, padding="same",
                        implementation=2, data_format="channels_last")
    kernel, bias = randomize(layer, rng)
    mask = np.broadcast_to(layer.geometry.connectivity_mask(), kernel.shape)
    x = rng.standard_normal((2, *instance_shape("channels_last"))).astype("float32")
    y = forward(layer, x)
    noisy = np.where(mask, kernel, 1e3 * rng.standard_normal(kernel.shape)).astype("float32")
    layer.set_weights([noisy, bias])
    np.testing.assert_array_equal(forward(layer, x), y)
    # One plain SGD step moves a weight by -lr * gradient on every backend: masked entries must stay.
    model = keras.Sequential([keras.Input(instance_shape("channels_last")), layer])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, np.ones_like(y), batch_size=2, epochs=1, verbose=0)
    trained = layer.get_weights()[0]
    assert np.array_equal(trained[~mask], noisy[~mask]) and np.any(trained[mask] != noisy[mask])


@pytest.mark.parametrize(("source", "target"), covering(IMPLEMENTATIONS, (2, 3, 1)))
def test_converted_kernel_gives_the_same_outputs_in_another_implementation(source, target, rng):
    args = {"filters": FILTERS, "kernel_size": (3, 2), "strides": (2, 1), "padding": "same",
            "data_format": "channels_first"}
    first, second = built_layer(**args, implementation=source), built_layer(**args, implementation=target)
    kernel, bias = randomize(first, rng)
    second.set_weights([convert_kernel(kernel, first, target), bias])
    x = rng.standard_normal((2, *instance_shape("channels_first"))).astype("float32")
    # exact for connected weights; taps off the input and masked entries multiply zeros
    assert relative_error(forward(second, x), forward(first, x)) <= RTOL


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_regularizers_and_constraints_apply(impl, rng):
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        LocallyConnected2D(2, 3, implementation=impl, kernel_regularizer="l2",
                           bias_regularizer="l2", activity_regularizer="l1",
                           kernel_constraint="non_neg", bias_initializer="ones"),
        keras.layers.Flatten(),
    ])
    x = rng.standard_normal((8, 5, 5, 2)).astype("float32")
    model(x)
    assert len(model.losses) == 3 and all(float(loss) > 0 for loss in model.losses)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, rng.standard_normal((8, 18)).astype("float32"), epochs=1, verbose=0)
    assert model.layers[0].get_weights()[0].min() >= 0


BAD_ARGUMENTS = [
    ({"filters": 0, "kernel_size": 3}, "filters", "filters=0"),
    ({"filters": -2, "kernel_size": 3}, "filters", "filters=-2"),
    ({"filters": 2.5, "kernel_size": 3}, "filters", "filters=2.5"),
    ({"filters": 2, "kernel_size": 0}, "kernel_size", "kernel_size=0"),
    ({"filters": 2, "kernel_size": (3, 3, 3)}, "kernel_size", "(3, 3, 3)"),
    ({"filters": 2, "kernel_size": 3, "strides": (1, 0)}, "strides", "(1, 0)"),
    ({"filters": 2, "kernel_size": 3, "padding": "causal"}, "padding", "'causal'"),
    ({"filters": 2, "kernel_size": 3, "data_format": "nhwc"}, "data_format", "'nhwc'"),
    ({"filters": 2, "kernel_size": 3, "implementation": 4}, "implementation", "implementation=4"),
    ({"filters": 2, "kernel_size": 3, "implementation": 0}, "implementation", "implementation=0"),
]


@pytest.mark.parametrize(("kwargs", "argument", "received"), BAD_ARGUMENTS)
def test_bad_argument_raises_value_error_naming_it(kwargs, argument, received):
    with pytest.raises(ValueError, match=f"`{argument}`") as info:
        LocallyConnected2D(**kwargs)
    assert "Expected" in str(info.value) and received in str(info.value)


def test_unknown_spatial_dimensions_are_refused_at_build():
    with pytest.raises(ValueError, match="known spatial dimensions.*None"):
        LocallyConnected2D(2, 3).build((None, None, 8, 3))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_kernel_larger_than_input_names_the_output_size(impl):
    with pytest.raises(ValueError, match=r"output size of -1x1"):
        LocallyConnected2D(2, (6, 3), implementation=impl).build((None, 4, 3, 1))
    LocallyConnected2D(2, (6, 3), padding="same", implementation=impl).build((None, 4, 3, 1))


@pytest.mark.slow
def test_deepface_l4_builds_with_implementation_3_and_computes(rng):
    """62.7 M connected weights; tf_keras's Python index construction runs out of memory here."""
    layer = LocallyConnected2D(16, 9, implementation=3)
    layer.build((None, 63, 63, 16))
    assert layer.kernel.shape == (62_726_400,)
    kernel = layer.get_weights()[0]
    x = rng.standard_normal((1, 63, 63, 16)).astype("float32")
    y = forward(layer, x)
    assert y.shape == (1, 55, 55, 16)
    local = convert_kernel(kernel, layer, 1)  # (L, 9*9*16, F), patch order (kh, kw, C)
    for row, col in ((0, 0), (54, 54), (17, 40)):
        patch = x[0, row:row + 9, col:col + 9, :].reshape(-1)
        expected = patch.astype(np.float64) @ local[row * 55 + col]
        np.testing.assert_allclose(y[0, row, col], expected, rtol=1e-4, atol=1e-4)
