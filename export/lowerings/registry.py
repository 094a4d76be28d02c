"""The one table of lowerings: ``(Keras layer class name, strategy) -> lowering``.

LocallyConnected2D has five float strategies (``local``, ``chunked``, ``adaptive``, ``dense``,
``sparse``) and one quantised (``int8``); every other layer has one, ``standard``. Adding a
layer is adding a row here and a function in its module.
"""

from __future__ import annotations

from export.lowerings import standard
from export.lowerings.adaptive import lower_locally_connected_adaptive
from export.lowerings.base import Lowering
from export.lowerings.chunked import lower_locally_connected_chunked
from export.lowerings.dense import lower_locally_connected_dense
from export.lowerings.int8 import lower_locally_connected_int8
from export.lowerings.local import lower_locally_connected_local
from export.lowerings.sparse import lower_locally_connected_sparse

STANDARD = "standard"
LC_TYPE = "LocallyConnected2D"
LC_STRATEGIES = ("local", "chunked", "adaptive", "dense", "sparse")
QUANTIZED_STRATEGIES = ("int8",)  # opt-in: they change the numbers, so ``auto`` never picks them

_IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                    "GaussianNoise", "GaussianDropout", "AlphaDropout", "ActivityRegularization",
                    "ClassLabels")

LOWERINGS: dict[tuple[str, str], Lowering] = {
    (LC_TYPE, "local"): lower_locally_connected_local,
    (LC_TYPE, "chunked"): lower_locally_connected_chunked,
    (LC_TYPE, "adaptive"): lower_locally_connected_adaptive,
    (LC_TYPE, "dense"): lower_locally_connected_dense,
    (LC_TYPE, "sparse"): lower_locally_connected_sparse,
    (LC_TYPE, "int8"): lower_locally_connected_int8,
    ("Conv2D", STANDARD): standard.lower_conv2d,
    ("MaxPooling2D", STANDARD): standard.lower_max_pooling2d,
    ("AveragePooling2D", STANDARD): standard.lower_average_pooling2d,
    ("GlobalAveragePooling2D", STANDARD): standard.lower_global_average_pooling2d,
    ("GlobalMaxPooling2D", STANDARD): standard.lower_global_max_pooling2d,
    ("Dense", STANDARD): standard.lower_dense,
    ("Flatten", STANDARD): standard.lower_flatten,
    ("Reshape", STANDARD): standard.lower_reshape,
    ("Permute", STANDARD): standard.lower_permute,
    ("Activation", STANDARD): standard.lower_activation_layer,
    ("ReLU", STANDARD): standard.lower_relu,
    ("LeakyReLU", STANDARD): standard.lower_leaky_relu,
    ("ELU", STANDARD): standard.lower_elu,
    ("Softmax", STANDARD): standard.lower_softmax,
    ("BatchNormalization", STANDARD): standard.lower_batch_normalization,
    ("Rescaling", STANDARD): standard.lower_rescaling,
    ("ZeroPadding2D", STANDARD): standard.lower_zero_padding2d,
    **{(name, STANDARD): standard.lower_identity for name in _IDENTITY_LAYERS},
}


def find_lowering(layer_type: str, strategy: str) -> Lowering | None:
    """The lowering for a layer type and strategy, or None when there is none."""
    return LOWERINGS.get((layer_type, strategy))
