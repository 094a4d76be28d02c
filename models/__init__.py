"""Keras 3 models built on LocallyConnected2D: the layer, kernel conversion, builders."""

from models.geometry import LocalGeometry
from models.kernels import convert_kernel
from models.locally_connected import LocallyConnected2D

__all__ = ["LocalGeometry", "LocallyConnected2D", "convert_kernel"]
