"""A tf_keras DeepFace weights file (``model.save_weights`` .h5, layers C1…F8) with random weights.

A stand-in for the published DeepFace weights, which this project does not download: the same
architecture and layer names, built with tf_keras (implementation 1, as published) and given
He-scaled random weights, so that ``lc2d import-legacy --architecture deepface`` reads it exactly
as it reads the real file. Smaller shapes (``--input-shape 72,72,3 --classes 7``) make a
DeepFace-shaped file for quick runs.

Usage:
    python scripts/deepface_weights.py -o deepface_weights.h5 [--input-shape 152,152,3] [--classes 8631]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from deepface_roundtrip import he_randomize, tf_keras_deepface  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="the .h5 weights file to write")
    parser.add_argument("--input-shape", default="152,152,3", help="ROWS,COLS,CHANNELS; default: 152,152,3")
    parser.add_argument("--classes", type=int, default=8631, help="identities of F8; default: 8631")
    parser.add_argument("--seed", type=int, default=2014)
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    if len(shape) != 3 or min(shape) < 1 or args.classes < 1:
        parser.error(f"expected --input-shape ROWS,COLS,CHANNELS and --classes >= 1. Received: "
                     f"{args.input_shape!r}, {args.classes}")
    model = tf_keras_deepface(args.classes, shape)  # type: ignore[arg-type]
    he_randomize(model, np.random.default_rng(args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(args.out)
    print(f"wrote {args.out} ({model.count_params():,} parameters, layers "
          f"{' '.join(layer.name for layer in model.layers)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
