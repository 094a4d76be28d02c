"""Times one ONNX file in a fresh process: ``python -m benchmarks.onnx_timer MODEL X.npy OUT``.

Why a process of its own: in a long benchmark process the same ONNX file measured 6.3 ms after
one method and 9.3 ms after another (reference layer 1, batch 64), because what ran before
(allocator state, other sessions' threads) leaks into the timing. A fresh process per ONNX
measurement gives every lowering the same start. The child loads the session with the suite's
options, runs the batch once (its output is saved for the error check), times it under the
given policy and writes the timing as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.floors import ort_session
from benchmarks.timing import TimingPolicy, measure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("batch", type=Path, help=".npy input batch")
    parser.add_argument("out", type=Path, help="folder for output.npy and timing.json")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--policy", required=True, help="TimingPolicy fields as JSON")
    args = parser.parse_args(argv)
    session = ort_session(str(args.model), args.threads)
    name = session.get_inputs()[0].name
    x = np.load(args.batch)
    np.save(args.out / "output.npy", session.run(None, {name: x})[0])
    timing = measure(lambda: session.run(None, {name: x}), TimingPolicy(**json.loads(args.policy)))
    (args.out / "timing.json").write_text(json.dumps(timing.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
