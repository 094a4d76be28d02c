"""TensorFlow's log lines are hidden by default for the TensorFlow verbs, shown with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys

from lc2d.cli import TENSORFLOW_VERBS, build_parser
from tests.service.conftest import REPO_ROOT

QUIET_RUN = ("from lc2d.tensorflow_logs import import_tensorflow; import_tensorflow(False); "
             "import tensorflow as tf; print(float(tf.reduce_sum(tf.ones((2, 2)))))")


def test_import_tensorflow_quietly_leaves_stderr_empty() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("TF_", "GRPC_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    result = subprocess.run([sys.executable, "-c", QUIET_RUN], capture_output=True, text=True, env=env,
                            timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "4.0\n"  # TensorFlow ran an op (device set-up included)
    assert result.stderr == ""


def test_tensorflow_verbs_take_verbose() -> None:
    parser = build_parser()
    for verb in TENSORFLOW_VERBS:
        assert parser.parse_args([verb, *_required(verb), "--verbose"]).verbose is True
        assert parser.parse_args([verb, *_required(verb)]).verbose is False


def _required(verb: str) -> list[str]:
    return {"train": ["--out", "m.keras"], "import-legacy": ["m.h5", "-o", "m.keras"],
            "export": ["m.keras"]}[verb]
