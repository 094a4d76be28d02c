"""Keras 3 models built on LocallyConnected2D: the layer, kernel conversion, builders."""

from models.geometry import LocalGeometry
from models.kernels import convert_kernel
from models.labels import ClassLabels, model_labels
from models.locally_connected import LocallyConnected2D

__all__ = ["ClassLabels", "LocalGeometry", "LocallyConnected2D", "convert_kernel", "model_labels"]
from models.builders import deepface, digits_classifier, seed_example  # noqa: E402

__all__ += ["deepface", "digits_classifier", "seed_example"]
