"""Times .keras models under the JAX or PyTorch backend in a fresh process:
``KERAS_BACKEND=jax python -m benchmarks.keras_backend_timer X.npy OUT A.keras ...``.

Keras picks its backend once per process, at import, so each backend's timings come from a
process of its own (the parent sets ``KERAS_BACKEND``). The forward pass is the one a user of
that backend runs at inference:

- JAX: ``model.stateless_call`` under ``jax.jit``, the variables passed in as arrays; the first
  call compiles (a warm-up, untimed); each timed call waits for its result
  (``block_until_ready``) and copies it to NumPy.
- PyTorch: ``model(x)`` under ``torch.inference_mode()``, eager: Keras's ``jit_compile="auto"``
  resolves to no compilation on PyTorch, and ``torch.compile`` would take minutes per model here.

Files are timed in ``--rounds`` interleaved rounds, as :mod:`benchmarks.onnx_timer` does, and
the output is in its format: ``OUT/<i>.npy`` (file ``i``'s output on the batch) and
``OUT/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.onnx_timer import error_text, interleaved, write_timings
from benchmarks.timing import TimingPolicy

BACKENDS = ("jax", "torch")


def jax_forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A jit-compiled inference call of ``model`` returning NumPy."""
    import jax

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def run(trainable: Any, frozen: Any, x: Any) -> Any:
        outputs, _ = model.stateless_call(trainable, frozen, x, training=False)
        return outputs

    return lambda x: np.asarray(run(trainable, frozen, jax.numpy.asarray(x)).block_until_ready())


def torch_forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """An eager inference call of ``model`` (no autograd bookkeeping) returning NumPy."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x), training=False).cpu().numpy()

    return run


FORWARDS = {"jax": jax_forward, "torch": torch_forward}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("batch", type=Path, help=".npy input batch")
    parser.add_argument("out", type=Path, help="folder for <i>.npy and timings.json")
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--policy", required=True, help="TimingPolicy fields as JSON")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    backend = os.environ.get("KERAS_BACKEND")
    if backend not in FORWARDS:
        parser.error(f"KERAS_BACKEND: expected one of {list(BACKENDS)}. Received: {backend!r}")
    import keras

    import models  # noqa: F401 - registers LocallyConnected2D for loading

    x = np.load(args.batch)
    entries: list[dict[str, Any]] = []
    calls: list[Callable[[], object] | None] = []
    for i, path in enumerate(args.models):
        try:
            forward = FORWARDS[backend](keras.saving.load_model(path, compile=False))
            np.save(args.out / f"{i}.npy", forward(x))  # also the compilation, untimed
        except Exception as err:  # noqa: BLE001 - one failing model must not stop the others
            entries.append({"error": error_text(err)})
            calls.append(None)
            continue
        entries.append({})
        calls.append(partial(forward, x))
    timings, medians = interleaved(calls, TimingPolicy(**json.loads(args.policy)), args.rounds)
    write_timings(args.out, entries, timings, medians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
