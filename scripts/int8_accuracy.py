"""The accuracy change of a reduced-precision export (``--variant int8``: the opt-in int8
strategy; ``--variant fp16``: ``--precision fp16``), on a trained model and on the benchmark models.

* **digits** (trained here, scikit-learn's 8×8 digits, the seed): test-split accuracy of the
  Keras model, of its float export (``auto``) and of its reduced export, and how many test
  answers change their top class.
* **reference example** and **DeepFace** up to its F7 features (random weights, as in
  ``lc2d bench``): the normwise error ``max |reduced - keras| / max |keras|``
  (``models.comparison.relative_error``) on random inputs.

Every model is run by ONNX Runtime on the CPU; the numbers go to stdout as a Markdown table and
to a JSON file.

Usage:
    .venv/bin/python scripts/int8_accuracy.py [--variant int8|fp16] [--out docs/perf/VARIANT_accuracy.json]
                                              [--no-deepface]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.comparison import relative_error  # noqa: E402


def run(path: Path, x: np.ndarray, batch: int = 64) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def variant_options(variant: str) -> Any:
    """The export options of ``variant``: ``float`` (fp32, auto), ``int8``, or ``fp16`` (local:
    ``auto`` would time every candidate on full-size DeepFace, which needs over 20 GB)."""
    from export import ExportOptions

    return {"float": ExportOptions(policy="auto"), "int8": ExportOptions(policy="int8"),
            "fp16": ExportOptions(policy="local", precision="fp16")}[variant]


def exported(model: Any, folder: Path, variant: str) -> Path:
    from export import to_onnx

    path = folder / f"{model.name}_{variant}.onnx"
    to_onnx(model, path, variant_options(variant))  # parity-checked: 1e-4 float, 1e-2 fp16, 5 % int8
    return path


def digits(folder: Path, variant: str) -> dict[str, Any]:
    from models.datasets import load_digits
    from models.training import train

    dataset = load_digits()
    model, _ = train(dataset, verbose=0)
    x, y = dataset.test.x, dataset.test.y
    keras_scores = np.asarray(model.predict(x, verbose=0))
    float_scores = run(exported(model, folder, "float"), x)
    reduced_scores = run(exported(model, folder, variant), x)
    top = {name: np.argmax(s, axis=1) for name, s in
           (("keras", keras_scores), ("float", float_scores), (variant, reduced_scores))}
    return {"model": "digits (trained)", "test_examples": int(len(y)),
            "accuracy_keras": float(np.mean(top["keras"] == y)),
            "accuracy_float_onnx": float(np.mean(top["float"] == y)),
            f"accuracy_{variant}_onnx": float(np.mean(top[variant] == y)),
            f"top1_changed_by_{variant}": int(np.sum(top[variant] != top["float"])),
            f"{variant}_normwise_error": relative_error(reduced_scores, keras_scores)}


def random_model(name: str, folder: Path, examples: int, variant: str) -> dict[str, Any]:
    """Normwise error of the variant against Keras; DeepFace up to F7, its 4096 features (with random
    weights its 8,631-way softmax is nearly uniform, where any error looks negligible)."""
    import keras

    from models import deepface, seed_example

    keras.utils.set_random_seed(0)
    if name == "reference example":
        model = seed_example()
    else:
        full = deepface()
        model = keras.Model(full.inputs, full.get_layer("F7").output, name="deepface_f7")
    x = np.random.default_rng(1).normal(size=(examples, *model.input_shape[1:])).astype(np.float32)
    expected = np.asarray(model.predict(x, verbose=0, batch_size=16))
    actual = run(exported(model, folder, variant), x, batch=16)
    return {"model": f"{name} (random weights, output {'F7' if name == 'DeepFace' else 'as built'})",
            "test_examples": examples, f"{variant}_normwise_error": relative_error(actual, expected)}


def markdown(rows: list[dict[str, Any]], variant: str) -> str:
    lines = [f"| model | examples | accuracy Keras / float ONNX / {variant} ONNX | "
             f"top-1 changed by {variant} | {variant} normwise error |", "|---|---:|---|---|---:|"]
    for r in rows:
        if "accuracy_keras" in r:
            keys = ("accuracy_keras", "accuracy_float_onnx", f"accuracy_{variant}_onnx")
            acc = " / ".join(f"{r[k]:.2%}" for k in keys)
            top = f"{r[f'top1_changed_by_{variant}']} of {r['test_examples']} changed"
        else:
            acc, top = "—", "—"
        error = f"{r[f'{variant}_normwise_error']:.3%}"
        lines.append(f"| {r['model']} | {r['test_examples']} | {acc} | {top} | {error} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", choices=("int8", "fp16"), default="int8")
    parser.add_argument("--out", type=Path, default=None, help="default: docs/perf/VARIANT_accuracy.json")
    parser.add_argument("--no-deepface", action="store_true", help="skip DeepFace (about a minute)")
    args = parser.parse_args(argv)
    out = args.out or Path(f"docs/perf/{args.variant}_accuracy.json")
    with tempfile.TemporaryDirectory(prefix=f"lc2d-{args.variant}-") as folder:
        work = Path(folder)
        rows = [digits(work, args.variant), random_model("reference example", work, 64, args.variant)]
        if not args.no_deepface:
            rows.append(random_model("DeepFace", work, 16, args.variant))
    print(markdown(rows, args.variant))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
