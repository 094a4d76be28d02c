"""Quiet TensorFlow for the verbs that use it (train, import-legacy, export), unless ``--verbose``.

Importing TensorFlow prints a dozen lines that read like failures on a CPU machine (oneDNN and
CPU-feature notices, "Could not find cuda drivers", later a ``cuInit`` error): some come from
TensorFlow's C++ logging, which ``TF_CPP_MIN_LOG_LEVEL`` silences if it is set before the
import, others are written before that logging is configured, straight to file descriptor 2.
:func:`import_tensorflow` sets the variables and imports TensorFlow and Keras with descriptor 2
pointed at a temporary file, which is shown only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ logging: fatal errors only (hides the cuInit error too)
    "GRPC_VERBOSITY": "ERROR",
}
VERBOSE_HELP = "show TensorFlow's own log lines (hidden by default)"


def import_tensorflow(verbose: bool) -> None:
    """Imports TensorFlow and Keras; quietly unless ``verbose``.

    A variable the user set (``TF_CPP_MIN_LOG_LEVEL=0``) is left as it is.
    """
    if verbose:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with _descriptor_2_captured() as captured:
        try:
            import keras  # noqa: F401 - imports TensorFlow, its backend
            import tensorflow as tf
        except BaseException:
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
    tf.get_logger().setLevel("ERROR")
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with TensorFlow; nothing to quiet without it
        pass


@contextmanager
def _descriptor_2_captured() -> Iterator[tempfile._TemporaryFileWrapper[bytes]]:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured  # type: ignore[misc]
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
