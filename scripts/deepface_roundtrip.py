"""Full-size DeepFace round trip: tf_keras model -> .h5 -> lc2d import -> compare outputs.

Builds DeepFace (152×152×3, 8631 classes) in tf_keras with random weights, saves it as a
full-model .h5 and as a weights-only .h5, imports both onto Keras 3 (the weights-only file
through ``architecture="deepface"``, layers matched by name), and compares each imported
model's outputs with tf_keras's on random faces. Prints a table and writes a JSON file.

tf_keras builds implementation 3 with Python index loops that run out of memory at DeepFace's
size, so the tf_keras side uses implementation 1 (the default); ``--implementation 2`` would
need an 11 GiB dense kernel for L4.

Usage:
    .venv/bin/python scripts/deepface_roundtrip.py [--out artifacts/deepface_roundtrip.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.comparison import relative_error  # noqa: E402

TOLERANCE = 1e-5


def tf_keras_deepface(classes: int, input_shape: tuple[int, int, int]):  # type: ignore[no-untyped-def]
    """DeepFace as published (tf_keras layers, public layer names), implementation 1."""
    import tf_keras

    layers = tf_keras.layers
    return tf_keras.Sequential([
        tf_keras.Input(shape=input_shape),
        layers.Conv2D(32, (11, 11), activation="relu", name="C1"),
        layers.MaxPooling2D(pool_size=(3, 3), strides=2, padding="same", name="M2"),
        layers.Conv2D(16, (9, 9), activation="relu", name="C3"),
        layers.LocallyConnected2D(16, (9, 9), activation="relu", name="L4"),
        layers.LocallyConnected2D(16, (7, 7), strides=2, activation="relu", name="L5"),
        layers.LocallyConnected2D(16, (5, 5), activation="relu", name="L6"),
        layers.Flatten(name="F0"),
        layers.Dense(4096, activation="relu", name="F7"),
        layers.Dropout(rate=0.5, name="D0"),
        layers.Dense(classes, activation="softmax", name="F8"),
    ], name="DeepFace")


def he_randomize(model, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    """Weights with variance 2 / fan-in so that activations neither vanish nor explode."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        kernel = weights[0]
        fan_in = kernel.shape[0] if kernel.ndim == 2 else (
            int(np.prod(kernel.shape[:-1])) if kernel.ndim == 4 else kernel.shape[1])
        new = [rng.standard_normal(kernel.shape, dtype=np.float32) * np.float32(np.sqrt(2 / fan_in))]
        new += [rng.uniform(0.0, 0.2, w.shape).astype("float32") for w in weights[1:]]
        layer.set_weights(new)


def features(model, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The F7 activations of a Keras 3 or tf_keras DeepFace."""
    tail = model.get_layer("F7").output
    is_tf_keras = type(model.layers[0]).__module__.startswith("tf_keras")
    import keras
    import tf_keras

    framework = tf_keras if is_tf_keras else keras
    return np.asarray(framework.Model(model.inputs[0], tail)(x, training=False))


def timed(label: str, timings: dict[str, float], fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    timings[label] = round(time.perf_counter() - started, 2)
    print(f"  {label:<34} {timings[label]:8.2f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=8631)
    parser.add_argument("--size", type=int, default=152, help="input rows = cols (≥ 71)")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("artifacts/deepface_roundtrip.json"))
    args = parser.parse_args()

    from models.legacy import import_legacy

    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(2014)
    timings: dict[str, float] = {}
    results: dict[str, object] = {"input_shape": list(shape), "classes": args.classes}
    print(f"DeepFace {shape} -> {args.classes} classes")
    with tempfile.TemporaryDirectory() as tmp:
        full, weights = Path(tmp) / "deepface.h5", Path(tmp) / "deepface_weights.h5"
        oracle = timed("tf_keras build", timings, tf_keras_deepface, args.classes, shape)
        timed("randomize weights", timings, he_randomize, oracle, rng)
        timed("tf_keras save .h5 (full)", timings, oracle.save, full)
        timed("tf_keras save_weights .h5", timings, oracle.save_weights, weights)
        x = rng.standard_normal((args.samples, *shape)).astype("float32")
        expected = np.asarray(timed("tf_keras predict", timings, oracle, x, training=False))
        oracle_features = features(oracle, x)
        results["top_probability"] = [round(float(p), 4) for p in expected.max(axis=1)]
        results["parameters"] = int(oracle.count_params())
        results["h5_mib"] = round(full.stat().st_size / 2**20, 1)
        for kind, path, kwargs in (
                ("full-model", full, {}),
                ("weights-only", weights, {"architecture": "deepface", "builder_kwargs": {
                    "classes": args.classes, "input_shape": shape}})):
            model, report = timed(f"import {kind} (+ tf_keras check)", timings, import_legacy,
                                  path, **kwargs)
            ours = np.asarray(model(x, training=False))
            error = relative_error(ours, expected)
            # The 4096 F7 features too: a saturated softmax alone could hide differences.
            feature_error = relative_error(features(model, x), oracle_features)
            results[kind] = {"max_relative_error": error, "f7_max_relative_error": feature_error,
                             "import_check": report.max_relative_error, "verified": report.verified}
            print(f"  {kind}: max relative error {error:.3g} (F7 features {feature_error:.3g}, "
                  f"import's own check {report.max_relative_error:.3g})", flush=True)
    results["timings_s"] = timings
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    ok = all(results[k]["max_relative_error"] <= TOLERANCE  # type: ignore[index]
             for k in ("full-model", "weights-only"))
    print(f"{'PASS' if ok else 'FAIL'} (tolerance {TOLERANCE:g}); wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
