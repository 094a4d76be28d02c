"""Model builders around LocallyConnected2D: plain functions that return a ``keras.Model``.

Every builder takes ``implementation=`` and passes it to each LocallyConnected2D it creates, so
one architecture can be built with any of the three weight layouts. ``labels=`` appends a
:class:`~models.labels.ClassLabels` layer that carries the class names inside the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from models.labels import ClassLabels
from models.locally_connected import LocallyConnected2D

DEEPFACE_CLASSES = 8631
DEEPFACE_INPUT_SHAPE = (152, 152, 3)
DIGITS_INPUT_SHAPE = (8, 8, 1)


def _finish(layers: list[keras.layers.Layer], input_shape: tuple[int, ...], name: str,
            labels: Sequence[str] | None) -> keras.Model:
    """A Sequential model of ``layers`` on ``input_shape``, with a ClassLabels layer if asked."""
    if labels is not None:
        layers = [*layers, ClassLabels(list(labels), name="labels")]
    return keras.Sequential([keras.Input(shape=input_shape, name="input"), *layers], name=name)


def seed_example(implementation: int = 1, input_shape: tuple[int, int, int] = (32, 32, 3),
                 labels: Sequence[str] | None = None) -> keras.Model:
    """The two-layer reference example: 32×32×3 → LC2D 64 3×3 → LC2D 32 3×3 (28×28×32 out).

    Args:
        implementation: LocallyConnected2D implementation (1, 2 or 3) for both layers.
        input_shape: one input, channels last.
        labels: optional class names; requires the output's last axis to have as many units.

    Returns:
        A ``keras.Sequential`` named ``seed_example``.
    """
    layers = [
        LocallyConnected2D(64, (3, 3), implementation=implementation, name="lc1"),
        LocallyConnected2D(32, (3, 3), implementation=implementation, name="lc2"),
    ]
    return _finish(layers, input_shape, "seed_example", labels)


def deepface(classes: int = DEEPFACE_CLASSES,
             input_shape: tuple[int, int, int] = DEEPFACE_INPUT_SHAPE,
             implementation: int = 1, labels: Sequence[str] | None = None) -> keras.Model:
    """The DeepFace architecture (Taigman et al., 2014) with the public code's layer names.

    C1 Conv 32 11×11 relu → M2 MaxPool 3×3 stride 2 "same" → C3 Conv 16 9×9 relu →
    L4 LC2D 16 9×9 relu → L5 LC2D 16 7×7 stride 2 relu → L6 LC2D 16 5×5 relu → F0 Flatten →
    F7 Dense 4096 relu → D0 Dropout 0.5 → F8 Dense ``classes`` softmax. Names match the published
    tf_keras weight files, so weights map layer by layer.

    Args:
        classes: number of identities in the softmax layer.
        input_shape: ``(rows, cols, channels)``; 152×152×3 in the paper. Smaller shapes (e.g.
            48×48×3) build a DeepFace-shaped model for tests.
        implementation: LocallyConnected2D implementation for L4, L5 and L6. Implementation 2
            stores a dense kernel: at full size that is billions of entries, so prefer 1 or 3.
        labels: optional class names, one per class.

    Returns:
        A ``keras.Sequential`` named ``deepface``.
    """
    relu = "relu"
    layers: list[keras.layers.Layer] = [
        keras.layers.Conv2D(32, (11, 11), activation=relu, name="C1"),
        keras.layers.MaxPooling2D(pool_size=(3, 3), strides=2, padding="same", name="M2"),
        keras.layers.Conv2D(16, (9, 9), activation=relu, name="C3"),
        LocallyConnected2D(16, (9, 9), activation=relu, implementation=implementation, name="L4"),
        LocallyConnected2D(16, (7, 7), strides=2, activation=relu, implementation=implementation,
                           name="L5"),
        LocallyConnected2D(16, (5, 5), activation=relu, implementation=implementation, name="L6"),
        keras.layers.Flatten(name="F0"),
        keras.layers.Dense(4096, activation=relu, name="F7"),
        keras.layers.Dropout(rate=0.5, name="D0"),
        keras.layers.Dense(classes, activation="softmax", name="F8"),
    ]
    return _finish(layers, tuple(input_shape), "deepface", labels)


def digits_classifier(classes: int = 10, input_shape: tuple[int, int, int] = DIGITS_INPUT_SHAPE,
                      implementation: int = 1, labels: Sequence[str] | None = None,
                      filters: int = 32) -> keras.Model:
    """A small classifier for 8×8×1 images (scikit-learn's digits), the default demo model.

    LC2D ``filters`` 3×3 relu → Flatten → Dense 64 relu → Dense ``classes`` softmax. Other input
    sizes work too (``lc2d train --dataset PATH.npz`` sizes it to the data); inputs smaller than
    3×3 use a 1×1 window.

    Args:
        classes: number of output classes.
        input_shape: ``(rows, cols, channels)``.
        implementation: LocallyConnected2D implementation (1, 2 or 3).
        labels: optional class names, one per class.
        filters: output filters of the LocallyConnected2D layer.

    Returns:
        A ``keras.Sequential`` named ``digits``.
    """
    window = (min(3, input_shape[0]), min(3, input_shape[1]))
    layers: list[keras.layers.Layer] = [
        LocallyConnected2D(filters, window, activation="relu", implementation=implementation,
                           name="local"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(64, activation="relu", name="hidden"),
        keras.layers.Dense(classes, activation="softmax", name="probabilities"),
    ]
    return _finish(layers, tuple(input_shape), "digits", labels)


# Builder name -> function, for `lc2d import-legacy --architecture NAME`.
BUILDERS: dict[str, Callable[..., Any]] = {
    "deepface": deepface,
    "seed_example": seed_example,
    "digits_classifier": digits_classifier,
}
