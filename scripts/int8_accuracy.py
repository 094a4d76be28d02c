"""The accuracy change of the opt-in int8 export, on a trained model and on the benchmark models.

* **digits** (trained here, scikit-learn's 8×8 digits, the seed): test-split accuracy of the
  Keras model, of its float export (``auto``) and of its int8 export, and how many test answers
  change their top class.
* **reference example** and **DeepFace** up to its F7 features (random weights, as in
  ``lc2d bench``): the normwise error ``max |int8 - keras| / max |keras|`` on random inputs.

Every model is run by ONNX Runtime on the CPU; the numbers go to stdout as a Markdown table and
to a JSON file.

Usage:
    .venv/bin/python scripts/int8_accuracy.py [--out docs/perf/int8_accuracy.json] [--no-deepface]
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


def exported(model: Any, folder: Path, lowering: str) -> Path:
    from export import ExportOptions, to_onnx

    path = folder / f"{model.name}_{lowering}.onnx"
    to_onnx(model, path, ExportOptions(policy=lowering))  # parity-checked: 1e-4 float, 5 % int8
    return path


def digits(folder: Path) -> dict[str, Any]:
    from models.datasets import load_digits
    from models.training import train

    dataset = load_digits()
    model, _ = train(dataset, verbose=0)
    x, y = dataset.test.x, dataset.test.y
    keras_scores = np.asarray(model.predict(x, verbose=0))
    float_scores = run(exported(model, folder, "auto"), x)
    int8_scores = run(exported(model, folder, "int8"), x)
    top = {name: np.argmax(s, axis=1) for name, s in
           (("keras", keras_scores), ("float", float_scores), ("int8", int8_scores))}
    return {"model": "digits (trained)", "test_examples": int(len(y)),
            "accuracy_keras": float(np.mean(top["keras"] == y)),
            "accuracy_float_onnx": float(np.mean(top["float"] == y)),
            "accuracy_int8_onnx": float(np.mean(top["int8"] == y)),
            "top1_changed_by_int8": int(np.sum(top["int8"] != top["float"])),
            "int8_normwise_error": relative_error(int8_scores, keras_scores)}


def random_model(name: str, folder: Path, examples: int) -> dict[str, Any]:
    """Normwise error of int8 against Keras; DeepFace up to F7, its 4096 features (with random
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
    actual = run(exported(model, folder, "int8"), x, batch=16)
    return {"model": f"{name} (random weights, output {'F7' if name == 'DeepFace' else 'as built'})",
            "test_examples": examples, "int8_normwise_error": relative_error(actual, expected)}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | examples | accuracy Keras / float ONNX / int8 ONNX | top-1 changed by int8 | "
             "int8 normwise error |", "|---|---:|---|---|---:|"]
    for r in rows:
        if "accuracy_keras" in r:
            keys = ("accuracy_keras", "accuracy_float_onnx", "accuracy_int8_onnx")
            acc = " / ".join(f"{r[k]:.2%}" for k in keys)
            top = f"{r['top1_changed_by_int8']} of {r['test_examples']} changed"
        else:
            acc, top = "—", "—"
        error = f"{r['int8_normwise_error']:.2%}"
        lines.append(f"| {r['model']} | {r['test_examples']} | {acc} | {top} | {error} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/perf/int8_accuracy.json"))
    parser.add_argument("--no-deepface", action="store_true", help="skip DeepFace (about a minute)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lc2d-int8-") as folder:
        work = Path(folder)
        rows = [digits(work), random_model("reference example", work, 64)]
        if not args.no_deepface:
            rows.append(random_model("DeepFace", work, 16))
    print(markdown(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
