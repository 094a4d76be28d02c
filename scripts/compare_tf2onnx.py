"""Export time of the reference example: lc2d's exporter vs tf2onnx on the tf_keras model.

Both models hold the same weights (tf_keras's implementation-1 layout is ours). In one run it
times ``export.to_onnx`` (parity check included) and ``tf2onnx.convert.from_keras`` on the
tf_keras version, checks both files give the same outputs, prints a table and writes JSON.

    .venv/bin/python scripts/compare_tf2onnx.py [--out artifacts/compare_tf2onnx.json]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _tf_keras_twin(weights: list[list[np.ndarray]]):  # type: ignore[no-untyped-def]
    import tf_keras

    model = tf_keras.Sequential([
        tf_keras.Input((32, 32, 3), name="input"),
        tf_keras.layers.LocallyConnected2D(64, (3, 3), implementation=1, name="lc1"),
        tf_keras.layers.LocallyConnected2D(32, (3, 3), implementation=1, name="lc2"),
    ])
    for layer, values in zip(model.layers, weights, strict=True):
        layer.set_weights(values)
    return model


def _onnx_nodes(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path)).graph.node)


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/compare_tf2onnx.json"))
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    import tensorflow as tf
    import tf2onnx

    from export import ExportOptions, to_onnx
    from models.builders import seed_example

    model = seed_example(implementation=1)
    twin = _tf_keras_twin([layer.get_weights() for layer in model.layers])
    workdir = Path(tempfile.mkdtemp(prefix="compare_tf2onnx_"))
    ours_path, theirs_path = workdir / "lc2d.onnx", workdir / "tf2onnx.onnx"

    start = time.perf_counter()
    report = to_onnx(model, ours_path, ExportOptions(opset=args.opset))
    ours_s = time.perf_counter() - start

    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="input"),)
    start = time.perf_counter()
    tf2onnx.convert.from_keras(twin, input_signature=spec, opset=args.opset, output_path=str(theirs_path))
    theirs_s = time.perf_counter() - start

    x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32)
    ours_y, theirs_y = _run(ours_path, x), _run(theirs_path, x)
    agreement = float(np.max(np.abs(ours_y - theirs_y)) / np.max(np.abs(theirs_y)))
    result = {
        "model": "seed_example (32x32x3 -> LC2D 64 3x3 -> LC2D 32 3x3), implementation 1",
        "lc2d_seconds": round(ours_s, 3), "lc2d_nodes": _onnx_nodes(ours_path),
        "lc2d_parity_max_rel_error": report.parity_max_rel_error,
        "tf2onnx_seconds": round(theirs_s, 3), "tf2onnx_nodes": _onnx_nodes(theirs_path),
        "ratio_lc2d_over_tf2onnx": round(ours_s / theirs_s, 4),
        "outputs_max_rel_difference": agreement, "opset": args.opset,
        "versions": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__},
    }
    print(f"{'exporter':<10} {'seconds':>9} {'nodes':>7}")
    print(f"{'lc2d':<10} {ours_s:>9.2f} {result['lc2d_nodes']:>7}")
    print(f"{'tf2onnx':<10} {theirs_s:>9.2f} {result['tf2onnx_nodes']:>7}")
    print(f"ratio lc2d / tf2onnx: {ours_s / theirs_s:.4f} (target <= 0.1); outputs agree to {agreement:.1e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if ours_s <= theirs_s / 10 else 1


if __name__ == "__main__":
    sys.exit(main())
