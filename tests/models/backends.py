"""Running the layer's tests under every Keras backend, and the files the backends exchange.

Keras chooses its backend once per process, at import, from ``KERAS_BACKEND``. The main pytest
process runs on TensorFlow (tests/conftest.py); :func:`run_suite` runs the backend-neutral part of
the layer's suite under another backend in a child pytest process. Each child also loads the
``.keras`` files the backends before it saved into one exchange folder, checks their weights and
outputs, and saves its own (:mod:`tests.models.backend_exchange`).

Environment variables read by the child:
    KERAS_BACKEND: ``jax`` or ``torch`` (or ``tensorflow``).
    LC2D_TEST_GRID: ``covering`` (default in a child: each implementation, data format and padding
        once, strides and kernel sizes rotating through them) or ``full`` (the whole grid).
    LC2D_BACKEND_EXCHANGE: the exchange folder.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.comparison import relative_error

GRID_ENV = "LC2D_TEST_GRID"
EXCHANGE_ENV = "LC2D_BACKEND_EXCHANGE"
BACKENDS_ENV = "LC2D_TEST_BACKENDS"  # the backends `make test` runs besides TensorFlow
DEFAULT_BACKENDS = ("jax",)
REPO_ROOT = Path(__file__).resolve().parents[2]
# Files a child runs, per grid. The covering grid leaves out the tests marked slow (large layers:
# dense kernels of hundreds of MB, DeepFace's L4) to keep `make test` short; `make test-backends`
# runs the full grid, the slow tests and the builders' tests too.
SUITES = {
    "covering": ("tests/models/test_locally_connected.py", "tests/models/backend_exchange.py"),
    "full": ("tests/models/test_locally_connected.py", "tests/models/test_builders.py",
             "tests/models/backend_exchange.py"),
}
MARKERS = {"covering": "not tensorflow_only and not slow", "full": "not tensorflow_only"}
RTOL = 1e-5  # normwise relative error allowed between backends on the same weights and input


def current_backend() -> str:
    import keras

    return str(keras.backend.backend())


def full_grid() -> bool:
    """Whether the parametrised tests of this process run their whole grid: yes unless a parent
    asked for the covering one (so always in the main TensorFlow process)."""
    return os.environ.get(GRID_ENV, "full") == "full"


def child_grid() -> str:
    """The grid the children run: ``covering`` (`make test`) unless ``LC2D_TEST_GRID=full``."""
    return "full" if os.environ.get(GRID_ENV) == "full" else "covering"


def layer_grid(implementations: tuple[int, ...], formats: tuple[str, ...], paddings: tuple[str, ...],
               strides: tuple[tuple[int, int], ...],
               kernels: tuple[tuple[int, int], ...]) -> list[tuple[Any, ...]]:
    """The full product, or a covering subset: every (implementation, format, padding) once, the
    (strides, kernel) pairs rotating so that each appears with every implementation."""
    if full_grid():
        return list(itertools.product(implementations, formats, paddings, strides, kernels))
    shapes = list(itertools.product(strides, kernels))
    return [(*combo, *shapes[i % len(shapes)])
            for i, combo in enumerate(itertools.product(implementations, formats, paddings))]


def covering(*axes: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The full product of ``axes``, or (covering grid) as few combinations as show every value of
    every axis once: the i-th takes each axis's value ``i`` modulo its length."""
    if full_grid():
        return list(itertools.product(*axes))
    return [tuple(axis[i % len(axis)] for axis in axes) for i in range(max(map(len, axes)))]


# --- the exchange folder ----------------------------------------------------------------------

EXCHANGE_INPUT = (6, 7, 2)


def exchange_model(implementation: int) -> Any:
    """Two LocallyConnected2D layers: "same" padding, strides, channels_last, then channels_first."""
    import keras

    from models import LocallyConnected2D

    return keras.Sequential([
        keras.Input(EXCHANGE_INPUT, name="input"),
        LocallyConnected2D(4, (3, 2), strides=(1, 2), padding="same", activation="relu",
                           implementation=implementation, name="lc1"),
        # reads the (6, 4, 4) output as 6 channels of 4x4
        LocallyConnected2D(3, 2, data_format="channels_first", implementation=implementation,
                           name="lc2"),
    ], name=f"exchange{implementation}")


def save_exchange_models(folder: Path, seed: int) -> list[Path]:
    """Random-weight models of every implementation saved as ``<backend>-impl<N>.keras``, each with
    ``.npz`` of its weights, an input and this backend's output."""
    import keras

    backend, rng, paths = current_backend(), np.random.default_rng(seed), []
    for implementation in (1, 2, 3):
        model = exchange_model(implementation)
        weights = [rng.standard_normal(w.shape).astype("float32") for w in model.get_weights()]
        model.set_weights(weights)
        x = rng.standard_normal((3, *EXCHANGE_INPUT)).astype("float32")
        path = folder / f"{backend}-impl{implementation}.keras"
        model.save(path)
        np.savez(path.with_suffix(".npz"), x=x, y=keras.ops.convert_to_numpy(model(x)),
                 **{f"w{i}": w for i, w in enumerate(weights)})
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Loaded:
    """A ``.keras`` file of another backend, loaded here."""

    path: Path
    weights_equal: bool
    output_error: float


def load_exchange_models(folder: Path) -> list[Loaded]:
    """Every ``*-impl<N>.keras`` saved by another backend, loaded and run on its saved input."""
    import keras

    import models  # noqa: F401  registers LocallyConnected2D, as a user's code must before loading

    backend, results = current_backend(), []
    for path in sorted(folder.glob("*-impl[123].keras")):
        if path.name.startswith(f"{backend}-"):
            continue
        saved = np.load(path.with_suffix(".npz"))
        model = keras.saving.load_model(path)
        weights = model.get_weights()
        equal = len(weights) == len([k for k in saved.files if k.startswith("w")]) and all(
            np.array_equal(w, saved[f"w{i}"]) for i, w in enumerate(weights))
        output = keras.ops.convert_to_numpy(model(saved["x"]))
        results.append(Loaded(path, equal, relative_error(output, saved["y"])))
    return results


# --- the parent's side ------------------------------------------------------------------------

def requested_backends() -> tuple[str, ...]:
    """Backends besides TensorFlow to run, from ``LC2D_TEST_BACKENDS`` (comma-separated)."""
    text = os.environ.get(BACKENDS_ENV, ",".join(DEFAULT_BACKENDS))
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class ChildRun:
    """What a child pytest process under one backend reported."""

    backend: str
    returncode: int
    passed: int
    not_passed: dict[str, int]
    seconds: float
    output: str


def run_suite(backend: str, exchange: Path, grid: str, timeout_s: float,
              only: str | None = None) -> ChildRun:
    """The backend-neutral layer suite in a child pytest process under ``backend``.

    ``only``: run just the exchange suite's tests whose names contain it (e.g. ``"earlier_backends"``
    to load, once every backend has saved its files, those saved after this backend ran).
    """
    # XLA's optimisation level 0 halves JAX's compile time per op (measured: 14.8 -> 8.2 s CPU on
    # the layer's shapes); the tests compare numbers at 1e-5, which it does not change.
    env = {**os.environ, "KERAS_BACKEND": backend, GRID_ENV: grid, EXCHANGE_ENV: str(exchange),
           "PYTHONPATH": str(REPO_ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", MARKERS[grid],
               *SUITES[grid]]
    if only is not None:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "tests/models/backend_exchange.py", "-k", only]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    output = done.stdout + done.stderr
    counts = {word: int(n) for n, word in re.findall(
        r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", output.splitlines()[-1] if output else "")}
    passed = counts.pop("passed", 0)
    return ChildRun(backend, done.returncode, passed, counts, time.perf_counter() - started, output)
