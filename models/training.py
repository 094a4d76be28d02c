"""Training a LocallyConnected2D classifier on a :class:`~models.datasets.Dataset`."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np

from models.builders import digits_classifier
from models.datasets import Dataset
from models.provenance import library_versions

# Defaults measured to reach >= 0.95 test accuracy on digits well within 2 minutes on 2 CPU cores
# for every implementation (docs/training.md has the numbers).
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 32
DEFAULT_LEARNING_RATE = 2e-3
DEFAULT_SEED = 0
VERSIONED_PACKAGES = ("lc2d-serve", "keras", "tensorflow", "jax", "torch", "numpy", "scikit-learn", "h5py")


@dataclass
class TrainingReport:
    """What a training run did and reached; ``to_dict()`` is the JSON report."""

    dataset: str
    backend: str
    implementation: int
    epochs: int
    seed: int
    batch_size: int
    learning_rate: float
    parameters: int
    train_examples: int
    validation_examples: int
    test_examples: int
    labels: list[str]
    input_shape: list[int]
    input_scale: float
    val_accuracy: float
    test_accuracy: float
    wall_time_s: float
    history: dict[str, list[float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _jit_compile() -> bool | str:
    """On TensorFlow, XLA's compile time outweighs its gain on models this small; JAX runs a
    training step op by op without ``jax.jit`` (many times slower), so there Keras's "auto"."""
    return False if keras.backend.backend() == "tensorflow" else "auto"


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of ``x`` whose arg-max prediction equals ``y``."""
    predicted = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    return float(np.mean(predicted == y))


def build_classifier(dataset: Dataset, implementation: int) -> keras.Model:
    """A digits-style classifier sized to the dataset, ending in a ClassLabels layer."""
    model = digits_classifier(classes=len(dataset.labels), input_shape=dataset.input_shape,
                              implementation=implementation, labels=dataset.labels)
    return model


def train(dataset: Dataset, implementation: int = 1, epochs: int = DEFAULT_EPOCHS,
          seed: int = DEFAULT_SEED, batch_size: int = DEFAULT_BATCH_SIZE,
          learning_rate: float = DEFAULT_LEARNING_RATE,
          verbose: int | str = 1) -> tuple[keras.Model, TrainingReport]:
    """Train a classifier on ``dataset`` and measure it on the held-out test split.

    Args:
        dataset: train / validation / test splits and class names.
        implementation: LocallyConnected2D implementation (1, 2 or 3).
        epochs: passes over the training split, a positive integer.
        seed: seeds Python, NumPy and the backend (``keras.utils.set_random_seed``).
        batch_size: examples per step.
        learning_rate: Adam's step size.
        verbose: Keras ``fit`` verbosity: 1 is a progress bar per epoch with loss and accuracy,
            2 one line per epoch, 0 silent.

    Returns:
        The trained model (last layer: ClassLabels with ``dataset.labels``) and its report.

    Raises:
        ValueError: if ``epochs`` or ``batch_size`` is not a positive integer.
    """
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"Invalid value for argument `{name}`. Expected a positive integer. "
                             f"Received: {name}={value!r}")
    keras.utils.set_random_seed(seed)
    started = time.perf_counter()
    model = build_classifier(dataset, implementation)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=_jit_compile())
    history = model.fit(dataset.train.x, dataset.train.y, batch_size=batch_size, epochs=epochs,
                        validation_data=(dataset.validation.x, dataset.validation.y),
                        shuffle=True, verbose=verbose)
    report = TrainingReport(
        dataset=dataset.name, backend=keras.backend.backend(), implementation=implementation,
        epochs=epochs, seed=seed,
        batch_size=batch_size, learning_rate=learning_rate, parameters=model.count_params(),
        train_examples=len(dataset.train.y), validation_examples=len(dataset.validation.y),
        test_examples=len(dataset.test.y), labels=list(dataset.labels),
        input_shape=list(dataset.input_shape), input_scale=dataset.input_scale,
        val_accuracy=accuracy(model, dataset.validation.x, dataset.validation.y),
        test_accuracy=accuracy(model, dataset.test.x, dataset.test.y),
        wall_time_s=0.0,
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        versions=library_versions(VERSIONED_PACKAGES))
    report.wall_time_s = round(time.perf_counter() - started, 3)
    return model, report
