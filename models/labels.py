"""Class names carried inside a Keras model, so that export and serving can return them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras


@keras.saving.register_keras_serializable(package="lc2d")
class ClassLabels(keras.layers.Layer):
    """Identity layer whose config holds the model's class names (one per output unit).

    Placed last in a model, it survives ``.keras`` save/load with the rest of the config;
    ``export`` lowers it to nothing and writes ``labels`` into the ONNX metadata.

    Args:
        labels: class names, in the order of the previous layer's output units.
    """

    def __init__(self, labels: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(labels, str) or not all(isinstance(x, str) for x in labels) or not labels:
            raise ValueError("Invalid value for argument `labels`. Expected a non-empty list of "
                             f"strings. Received: labels={labels!r}")
        self.labels = list(labels)

    def build(self, input_shape: tuple[Any, ...]) -> None:
        if input_shape[-1] is not None and input_shape[-1] != len(self.labels):
            raise ValueError(f"ClassLabels has {len(self.labels)} labels. Expected the previous "
                             f"layer to have as many units. Received: input_shape={input_shape}")
        self.built = True

    def call(self, inputs: Any) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "labels": self.labels}


def model_labels(model: keras.Model) -> list[str] | None:
    """The class names stored in a model by a :class:`ClassLabels` layer, if any."""
    for layer in model.layers:
        if isinstance(layer, ClassLabels):
            return list(layer.labels)
    return None
