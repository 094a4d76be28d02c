"""Import tf_keras (Keras 2) ``.h5`` models onto Keras 3 with our LocallyConnected2D.

The ``.h5`` file is read with h5py alone, so importing needs no tf_keras:

* a full-model file holds the architecture as JSON (root attribute ``model_config``) and the
  weights under the ``model_weights`` group, one sub-group per layer listing its
  ``weight_names`` in the layer's weight order;
* a weights-only file (``model.save_weights("x.h5")``) holds the same per-layer groups at the
  root, and the architecture comes from one of our builders (``architecture="deepface"``).

Each layer is rebuilt from its Keras 2 config with the Keras 3 class of the same name (and our
LocallyConnected2D, same implementation, so its weights copy unchanged); config keys Keras 3
does not know are dropped and reported. When tf_keras is importable, the imported model is
checked against tf_keras itself loading the same file, on random inputs.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from models.builders import BUILDERS
from models.comparison import relative_error
from models.labels import ClassLabels
from models.locally_connected import LocallyConnected2D

DEFAULT_TOLERANCE = 1e-5
# Keras 2 layer classes we rebuild, by config class name -> Keras 3 class.
SUPPORTED_LAYERS: dict[str, type[keras.layers.Layer]] = {
    "LocallyConnected2D": LocallyConnected2D,
    **{name: getattr(keras.layers, name) for name in (
        "InputLayer", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
        "GlobalMaxPooling2D", "Dense", "Flatten", "Dropout", "Activation", "ReLU", "Softmax",
        "BatchNormalization", "Reshape", "ZeroPadding2D", "Add", "Concatenate", "Multiply")},
}
# Keys every Keras 3 layer accepts besides its own __init__ arguments.
BASE_LAYER_KEYS = {"name", "trainable", "dtype"}


class LegacyImportError(ValueError):
    """A legacy file that cannot be imported; the message says what was expected and received."""


class UnsupportedLegacyLayersError(LegacyImportError):
    """Layers the importer cannot rebuild, all listed at once."""

    def __init__(self, layers: Sequence[tuple[str, str, str]]) -> None:
        self.layers = list(layers)
        listed = "; ".join(f"{name} ({cls}: {why})" for name, cls, why in self.layers)
        super().__init__(f"Expected only supported layers ({', '.join(sorted(SUPPORTED_LAYERS))}). "
                         f"Received {len(self.layers)} unsupported: {listed}.")


@dataclass
class ImportReport:
    """What an import did: source, layers, dropped config keys, and the check against tf_keras."""

    source: str
    kind: str  # "full-model" or "weights-only"
    architecture: str
    keras_version: str | None
    layers: int
    parameters: int
    dropped_config_keys: dict[str, list[str]] = field(default_factory=dict)
    verified: bool = False
    max_relative_error: float | None = None
    verification_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LegacyFile:
    """The parts of a tf_keras ``.h5`` file the importer uses."""

    model_config: dict[str, Any] | None
    weights: dict[str, list[np.ndarray]]
    keras_version: str | None
    weight_names: dict[str, list[str]] = field(default_factory=dict)


# --- reading the file ----------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _names_attribute(group: h5py.Group, name: str) -> list[str]:
    """A list-of-names attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [_text(v) for v in values]


def _read_weights(group: h5py.Group) -> tuple[dict[str, list[np.ndarray]], dict[str, list[str]]]:
    """Per layer name: its arrays, and their names (e.g. ``L4/kernel:0``), in weight order."""
    weights, names = {}, {}
    for layer_name in _names_attribute(group, "layer_names"):
        layer_group = group[layer_name]
        names[layer_name] = _names_attribute(layer_group, "weight_names")
        weights[layer_name] = [np.asarray(layer_group[w]) for w in names[layer_name]]
    return weights, names


def read_legacy_h5(path: str | Path) -> LegacyFile:
    """Read a tf_keras full-model or weights-only ``.h5`` file with h5py.

    Raises:
        LegacyImportError: the file is missing, not HDF5, or not a Keras 2 model/weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise LegacyImportError(f"Expected an existing tf_keras .h5 file. Received: {str(path)!r}, "
                                "which does not exist or is not a file.")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise LegacyImportError(f"Expected an HDF5 (.h5) file saved by tf_keras. Received: "
                                f"{str(path)!r}, which is not HDF5 ({err}).") from err
    with h5:
        version = _text(h5.attrs["keras_version"]) if "keras_version" in h5.attrs else None
        config = json.loads(_text(h5.attrs["model_config"])) if "model_config" in h5.attrs else None
        weight_group = h5.get("model_weights", h5)
        if not any(k in weight_group.attrs for k in ("layer_names", "layer_names0")):
            raise LegacyImportError(f"Expected a tf_keras .h5 model or weights file (attribute "
                                    f"'layer_names'). Received: {str(path)!r}, without one.")
        weights, names = _read_weights(weight_group)
        return LegacyFile(config, weights, version, names)


# --- rebuilding layers ---------------------------------------------------------------------


def accepted_keys(cls: type) -> set[str]:
    """The config keys ``cls`` accepts: its named ``__init__`` arguments and the base layer's.

    Keras layers also take ``**kwargs``, but pass them to a base class that rejects unknown
    keys, so only named arguments count.
    """
    params = inspect.signature(cls).parameters
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named | BASE_LAYER_KEYS


def _translate_config(class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """Keras 2 config -> Keras 3 config for the keys whose meaning or form changed."""
    config = dict(config)
    if class_name == "InputLayer":
        shape = config.pop("batch_input_shape", None) or config.pop("batch_shape", None)
        config["batch_shape"] = tuple(shape) if shape is not None else None
    config.pop("batch_input_shape", None)  # the Input built from it carries the shape
    if isinstance(config.get("dtype"), dict):  # a mixed-precision policy object
        config["dtype"] = config["dtype"].get("config", {}).get("name", "float32")
    if class_name == "BatchNormalization" and isinstance(config.get("axis"), list):
        axis = config["axis"]
        config["axis"] = axis[0] if len(axis) == 1 else axis
    return config


def rebuild_layer(class_name: str, config: dict[str, Any]) -> tuple[keras.layers.Layer, list[str]]:
    """A Keras 3 layer from a Keras 2 config, and the config keys it had to drop.

    Raises:
        LegacyImportError: unsupported class, or Keras 3 rejected the translated config.
    """
    cls = SUPPORTED_LAYERS.get(class_name)
    if cls is None:
        raise LegacyImportError("no Keras 3 equivalent in lc2d")
    translated = _translate_config(class_name, config)
    dropped = sorted(set(translated) - accepted_keys(cls))
    kept = {k: v for k, v in translated.items() if k not in dropped}
    try:
        return cls.from_config(kept), dropped
    except (TypeError, ValueError) as err:
        raise LegacyImportError(f"config rejected by Keras 3 ({err})") from err


def _layer_specs(model_config: dict[str, Any]) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    kind = model_config.get("class_name")
    config = model_config.get("config", {})
    layers = config.get("layers") if isinstance(config, dict) else None
    if kind not in ("Sequential", "Functional", "Model") or not isinstance(layers, list):
        raise LegacyImportError("Expected a Sequential or functional Model config with 'layers'. "
                                f"Received: class_name={kind!r}.")
    return str(kind), config, layers


def _rebuild_all(specs: list[dict[str, Any]]) -> tuple[dict[str, keras.layers.Layer],
                                                      dict[str, list[str]]]:
    """Every layer of ``specs`` rebuilt; all failures raised together."""
    layers, dropped, failures = {}, {}, []
    for spec in specs:
        class_name, config = spec.get("class_name", "?"), dict(spec.get("config", {}))
        name = config.get("name") or spec.get("name", "?")
        try:
            layers[name], dropped_keys = rebuild_layer(class_name, config)
        except LegacyImportError as err:
            failures.append((name, class_name, str(err)))
            continue
        if dropped_keys:
            dropped[name] = dropped_keys
    if failures:
        raise UnsupportedLegacyLayersError(failures)
    return layers, dropped


def _input_layer_spec(first: dict[str, Any]) -> dict[str, Any] | None:
    """An InputLayer spec for a Sequential config whose first layer carries the input shape."""
    shape = first.get("config", {}).get("batch_input_shape")
    if first.get("class_name") == "InputLayer" or shape is None:
        return None
    name = f"{first['config'].get('name', 'layer')}_input"
    return {"class_name": "InputLayer", "config": {"batch_input_shape": shape, "name": name}}


def _sequential(config: dict[str, Any], specs: list[dict[str, Any]]) -> tuple[keras.Model,
                                                                            dict[str, list[str]]]:
    implicit_input = _input_layer_spec(specs[0]) if specs else None
    if implicit_input is None and (not specs or specs[0].get("class_name") != "InputLayer"):
        raise LegacyImportError("Expected a Sequential model with a known input shape. Received a "
                                "config without an InputLayer or batch_input_shape.")
    specs = [implicit_input, *specs] if implicit_input else specs
    layers, dropped = _rebuild_all(specs)
    model = keras.Sequential(list(layers.values()), name=config.get("name"))
    return model, dropped


def _node_inputs(node: Any, tensors: dict[tuple[str, int, int], Any]) -> Any:
    """The tensors a Keras 2 inbound node refers to: ``[[layer, node, tensor, kwargs], ...]``."""
    refs = node if isinstance(node, list) else []
    try:
        inputs = [tensors[(ref[0], int(ref[1]), int(ref[2]))] for ref in refs]
    except (KeyError, IndexError, TypeError) as err:
        raise LegacyImportError(f"Expected inbound nodes [[layer, node, tensor, kwargs], ...] "
                                f"referring to earlier layers. Received: {node!r}.") from err
    return inputs[0] if len(inputs) == 1 else inputs


def _functional(config: dict[str, Any], specs: list[dict[str, Any]]) -> tuple[keras.Model,
                                                                            dict[str, list[str]]]:
    layers, dropped = _rebuild_all(specs)
    tensors: dict[tuple[str, int, int], Any] = {}
    for spec in specs:
        name = spec.get("name") or spec["config"]["name"]
        layer = layers[spec["config"].get("name", name)]
        if isinstance(layer, keras.layers.InputLayer):
            tensors[(name, 0, 0)] = layer.output
            continue
        for index, node in enumerate(spec.get("inbound_nodes", [])):
            outputs = layer(_node_inputs(node, tensors))
            for t, tensor in enumerate(outputs if isinstance(outputs, (list, tuple)) else [outputs]):
                tensors[(name, index, t)] = tensor

    def endpoints(key: str) -> list[Any]:
        refs = config.get(key, [])
        refs = [refs] if refs and not isinstance(refs[0], list) else refs
        return [tensors[(r[0], int(r[1]), int(r[2]))] for r in refs]

    inputs, outputs = endpoints("input_layers"), endpoints("output_layers")
    model = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                        outputs[0] if len(outputs) == 1 else outputs, name=config.get("name"))
    return model, dropped


def rebuild_model(model_config: dict[str, Any]) -> tuple[keras.Model, dict[str, list[str]]]:
    """A Keras 3 model from a tf_keras ``model_config``, and the config keys dropped per layer.

    Raises:
        UnsupportedLegacyLayersError: listing every layer that cannot be rebuilt.
        LegacyImportError: the config is neither Sequential nor functional.
    """
    kind, config, specs = _layer_specs(model_config)
    if kind == "Sequential":
        return _sequential(config, specs)
    return _functional(config, specs)


# --- weights -------------------------------------------------------------------------------


def _weight_shapes(layer: keras.layers.Layer, implementation: int | None) -> list[tuple[int, ...]]:
    """The layer's weight shapes; a LocallyConnected2D kernel as ``implementation`` stores it."""
    shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if implementation is not None and isinstance(layer, LocallyConnected2D) and layer.geometry is not None:
        shapes[0] = layer.geometry.kernel_shape(implementation)  # the kernel is its first weight
    return shapes


def check_weight_shapes(model: keras.Model, weights: dict[str, list[np.ndarray]],
                        implementation: int | None = None) -> None:
    """Compare the file's weights with the model's, layer by layer, without copying anything.

    Args:
        model: the model the weights are meant for.
        weights: layer name -> arrays, as read from the file.
        implementation: compare LocallyConnected2D kernels as this implementation stores them
            (the model may be built with a cheaper one); None: as the model stores them.

    Raises:
        LegacyImportError: listing every missing layer and every shape mismatch at once.
    """
    problems = []
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = weights.get(layer.name)
        if arrays is None:
            problems.append(f"layer {layer.name!r} has no weights in the file")
            continue
        expected = _weight_shapes(layer, implementation)
        received = [tuple(a.shape) for a in arrays]
        if expected != received:
            problems.append(f"layer {layer.name!r} expects weights {expected}, file has {received}")
    used = {layer.name for layer in model.layers}
    extra = sorted(n for n, arrays in weights.items() if arrays and n not in used)
    if extra:
        problems.append(f"the file has weights for layers the model lacks: {extra}")
    if problems:
        raise LegacyImportError("Expected the file's weights to match the model layer by layer. "
                                "Received: " + "; ".join(problems) + ".")


def copy_weights(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Set every weighted layer of ``model`` from ``weights`` (layer name -> arrays), by name.

    Raises:
        LegacyImportError: listing every missing layer and every shape mismatch at once.
    """
    check_weight_shapes(model, weights)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights(weights[layer.name])


# --- checking against tf_keras -------------------------------------------------------------


def tf_keras_mirror(model: keras.Model) -> Any:
    """A tf_keras Sequential with the same layers as the Keras 3 Sequential ``model``.

    Only the structure is carried over (initializers, regularizers and dtypes are left at
    tf_keras's defaults); weights come from the file, loaded by tf_keras itself.
    """
    import tf_keras

    mirrored = [tf_keras.Input(shape=model.input_shape[1:])]
    for layer in model.layers:
        if isinstance(layer, ClassLabels):
            continue
        cls = getattr(tf_keras.layers, type(layer).__name__)
        keys = accepted_keys(cls)
        config = {k: v for k, v in layer.get_config().items()
                  if k in keys and k != "dtype" and not k.endswith(
                      ("_initializer", "_regularizer", "_constraint"))}
        mirrored.append(cls.from_config(config))
    return tf_keras.Sequential(mirrored, name=model.name)


def tf_keras_oracle(path: Path, weights_only_model: keras.Model | None) -> Any:
    """tf_keras's own reading of ``path``: the full model, or a mirror loading the weights."""
    import tf_keras

    if weights_only_model is None:
        return tf_keras.models.load_model(path, compile=False)
    oracle = tf_keras_mirror(weights_only_model)
    oracle.load_weights(path, by_name=True)
    return oracle


def compare_with_tf_keras(model: keras.Model, path: Path, weights_only: bool, samples: int = 4,
                          seed: int = 0) -> float:
    """Max relative error between ``model`` and tf_keras's model from ``path`` on random inputs."""
    oracle = tf_keras_oracle(path, model if weights_only else None)
    rng = np.random.default_rng(seed)
    inputs = model.inputs if isinstance(model.inputs, list) else [model.inputs]
    batch = [rng.standard_normal((samples, *t.shape[1:])).astype("float32") for t in inputs]
    feed = batch[0] if len(batch) == 1 else batch
    ours = keras.ops.convert_to_numpy(model(feed, training=False))
    theirs = np.asarray(oracle(feed, training=False))
    return relative_error(ours, theirs)


# --- the whole import ----------------------------------------------------------------------


def stored_implementation(legacy: LegacyFile) -> int:
    """The LocallyConnected2D implementation a weights file was saved with, from kernel ranks.

    Implementation 2 stores 6-D kernels and implementation 3 1-D kernels; no standard layer
    does either, so any such kernel decides. Otherwise implementation 1 (3-D kernels).
    """
    ranks = {array.ndim for layer, arrays in legacy.weights.items()
             for array, name in zip(arrays, legacy.weight_names.get(layer, []), strict=False)
             if name.rsplit("/", 1)[-1].startswith("kernel")}
    return 2 if 6 in ranks else 3 if 1 in ranks else 1


def _model_from_builder(architecture: str, builder_kwargs: dict[str, Any]) -> keras.Model:
    builder: Callable[..., keras.Model] | None = BUILDERS.get(architecture)
    if builder is None:
        raise LegacyImportError(f"Expected an architecture in {sorted(BUILDERS)}. "
                                f"Received: {architecture!r}.")
    try:
        return builder(**builder_kwargs)
    except (TypeError, ValueError) as err:
        raise LegacyImportError(f"Cannot build {architecture!r} with {builder_kwargs}: {err}") from err


def _model_for_weights(architecture: str, builder_kwargs: dict[str, Any],
                       weights: dict[str, list[np.ndarray]]) -> keras.Model:
    """The builder's model, its weight shapes compared with the file's before anything large exists.

    Implementation 2 allocates a dense kernel per LocallyConnected2D (5.38 GiB for
    seed_example's second layer), so a file that does not fit would run out of memory before
    the shapes were compared: the shapes are first checked on the model built with
    implementation 1 (connected weights only), converted to implementation 2's layout.
    """
    if builder_kwargs.get("implementation") == 2:
        probe = _model_from_builder(architecture, {**builder_kwargs, "implementation": 1})
        check_weight_shapes(probe, weights, implementation=2)
        del probe
    return _model_from_builder(architecture, builder_kwargs)


def _verify(model: keras.Model, path: Path, weights_only: bool, report: ImportReport,
            tolerance: float) -> None:
    try:
        import tf_keras  # noqa: F401
    except ImportError:
        report.verification_note = "tf_keras is not installed; outputs were not compared"
        return
    error = compare_with_tf_keras(model, path, weights_only)
    report.max_relative_error = error
    report.verified = error <= tolerance
    report.verification_note = f"max relative error vs tf_keras {error:.3g} (tolerance {tolerance:g})"
    if not report.verified:
        raise LegacyImportError(f"Expected the imported model to match tf_keras within {tolerance:g} "
                                f"(relative). Received a max relative error of {error:.3g}.")


def import_legacy(path: str | Path, architecture: str | None = None,
                  builder_kwargs: dict[str, Any] | None = None, labels: Sequence[str] | None = None,
                  verify: bool = True,
                  tolerance: float = DEFAULT_TOLERANCE) -> tuple[keras.Model, ImportReport]:
    """Import a tf_keras ``.h5`` model (or weights file + builder) onto Keras 3.

    Args:
        path: the ``.h5`` file saved by tf_keras (``model.save`` or ``model.save_weights``).
        architecture: builder name for a weights-only file (``"deepface"``, ``"seed_example"``,
            ``"digits_classifier"``); with a full-model file it replaces the stored architecture.
        builder_kwargs: arguments for the builder, e.g. ``{"classes": 10,
            "input_shape": (72, 72, 3)}``; ``implementation`` defaults to the one the file's
            kernels were saved with.
        labels: optional class names, stored in the model by a final ClassLabels layer.
        verify: compare with tf_keras on random inputs when tf_keras is installed.
        tolerance: largest accepted max relative error in that comparison.

    Returns:
        The Keras 3 model with every weight copied, and an :class:`ImportReport`.

    Raises:
        UnsupportedLegacyLayersError: every layer without a Keras 3 equivalent, listed at once.
        LegacyImportError: unreadable file, weight mismatch, or outputs differing from tf_keras.
    """
    path = Path(path)
    legacy = read_legacy_h5(path)
    weights_only = legacy.model_config is None
    dropped: dict[str, list[str]] = {}
    if architecture is not None:
        kwargs = {"implementation": stored_implementation(legacy), **(builder_kwargs or {})}
        model = _model_for_weights(architecture, kwargs, legacy.weights)
    elif weights_only:
        raise LegacyImportError(f"{str(path)!r} holds weights only. Expected an architecture "
                                f"(one of {sorted(BUILDERS)}) to build the model around them.")
    else:
        assert legacy.model_config is not None
        model, dropped = rebuild_model(legacy.model_config)
    copy_weights(model, legacy.weights)
    report = ImportReport(str(path), "weights-only" if weights_only else "full-model",
                          architecture or str(legacy.model_config.get("class_name")
                                              if legacy.model_config else ""),
                          legacy.keras_version, len(model.layers), model.count_params(), dropped)
    if verify:
        _verify(model, path, weights_only or architecture is not None, report, tolerance)
    if labels is not None:
        model = _with_labels(model, labels)
    return model, report


def _with_labels(model: keras.Model, labels: Sequence[str]) -> keras.Model:
    """``model`` followed by a ClassLabels layer (weights shared, not copied)."""
    outputs = ClassLabels(list(labels), name="labels")(model.outputs[0])
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    return keras.Model(inputs, outputs, name=model.name)
