"""Model builders: output shapes, layer names, parameter counts, implementation passed through.

Expected parameter counts are computed here from the layer definitions (windows, locations,
filters), not read from the models.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models import ClassLabels, LocallyConnected2D, model_labels
from models.builders import BUILDERS, deepface, digits_classifier, seed_example

DEEPFACE_NAMES = ["C1", "M2", "C3", "L4", "L5", "L6", "F0", "F7", "D0", "F8"]
# (output rows = cols, kernel side, input channels, filters) of L4, L5, L6 at 152x152x3.
DEEPFACE_LOCAL = {"L4": (55, 9, 16, 16), "L5": (25, 7, 16, 16), "L6": (21, 5, 16, 16)}
DEEPFACE_KERNELS = {"L4": 62_726_400, "L5": 7_840_000, "L6": 2_822_400}  # from the issue


def local_layers(model: keras.Model) -> list[LocallyConnected2D]:
    return [layer for layer in model.layers if isinstance(layer, LocallyConnected2D)]


@pytest.fixture(scope="module")
def full_deepface() -> keras.Model:
    return deepface(implementation=3)


def test_deepface_has_public_layer_names_and_output_shape(full_deepface):
    assert [layer.name for layer in full_deepface.layers] == DEEPFACE_NAMES
    assert full_deepface.input_shape == (None, 152, 152, 3)
    assert full_deepface.output_shape == (None, 8631)


def test_deepface_local_layers_hold_the_documented_weight_counts(full_deepface):
    for layer in local_layers(full_deepface):
        out, k, channels, filters = DEEPFACE_LOCAL[layer.name]
        kernel_count = out * out * k * k * channels * filters
        assert kernel_count == DEEPFACE_KERNELS[layer.name]
        assert layer.kernel.shape == (kernel_count,)  # implementation 3: connected weights only
        assert layer.bias.shape == (out, out, filters)
        assert layer.count_params() == kernel_count + out * out * filters


def test_deepface_total_parameters_match_the_architecture(full_deepface):
    conv = (11 * 11 * 3 * 32 + 32) + (9 * 9 * 32 * 16 + 16)
    local = sum(DEEPFACE_KERNELS.values()) + sum(o * o * f for o, _, _, f in DEEPFACE_LOCAL.values())
    dense = (21 * 21 * 16 * 4096 + 4096) + (4096 * 8631 + 8631)
    assert full_deepface.count_params() == conv + local + dense == 137_774_071


def test_deepface_implementation_1_stores_the_same_weights_as_3_in_its_layout():
    # Built on a 72x72 input (the smallest DeepFace-shaped size is 71x71) to stay small.
    model = deepface(classes=7, input_shape=(72, 72, 3), implementation=1)
    shapes = {layer.name: tuple(layer.kernel.shape) for layer in local_layers(model)}
    # 72 -> C1 62 -> M2 31 -> C3 23 -> L4 15 -> L5 5 -> L6 1
    assert shapes == {"L4": (225, 9 * 9 * 16, 16), "L5": (25, 7 * 7 * 16, 16),
                      "L6": (1, 5 * 5 * 16, 16)}
    assert model.output_shape == (None, 7)


def test_deepface_too_small_input_raises_value_error():
    with pytest.raises(ValueError, match="output size"):
        deepface(classes=3, input_shape=(48, 48, 3))


def test_seed_example_gives_28x28x32_and_its_parameter_count():
    model = seed_example(implementation=1)
    assert model.output_shape == (None, 28, 28, 32)
    lc1 = 30 * 30 * (3 * 3 * 3) * 64 + 30 * 30 * 64
    lc2 = 28 * 28 * (3 * 3 * 64) * 32 + 28 * 28 * 32
    assert model.count_params() == lc1 + lc2


def test_digits_classifier_maps_8x8x1_images_to_10_probabilities(rng):
    model = digits_classifier()
    assert model.input_shape == (None, 8, 8, 1)
    assert len(local_layers(model)) >= 1
    probabilities = keras.ops.convert_to_numpy(model(rng.random((4, 8, 8, 1)).astype("float32")))
    assert probabilities.shape == (4, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_digits_classifier_with_labels_ends_in_class_labels():
    model = digits_classifier(labels=[str(d) for d in range(10)])
    assert isinstance(model.layers[-1], ClassLabels)
    assert model_labels(model) == [str(d) for d in range(10)]


def test_digits_classifier_with_wrong_label_count_raises_value_error():
    with pytest.raises(ValueError, match="labels"):
        digits_classifier(classes=10, labels=["a", "b"])


# Small inputs keep implementation 2's dense kernels small.
SMALL_INPUTS = {"seed_example": {"input_shape": (8, 8, 3)}, "digits_classifier": {},
                "deepface": {"classes": 5, "input_shape": (72, 72, 3)}}


@pytest.mark.parametrize("implementation", (1, 2, 3))
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_passes_implementation_to_every_local_layer(name, implementation):
    model = BUILDERS[name](implementation=implementation, **SMALL_INPUTS[name])
    layers = local_layers(model)
    assert layers and all(layer.implementation == implementation for layer in layers)
