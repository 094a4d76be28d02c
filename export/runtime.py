"""ONNX Runtime sessions for the export's own checks (parity and ``auto`` timings)."""

from __future__ import annotations

from typing import Any

from export.errors import ExportError
from export.options import DEFAULT_PROVIDER


def make_session(model: str | bytes, provider: str = DEFAULT_PROVIDER, stop_spinning: bool = False) -> Any:
    """An ORT session on ``provider`` for a file path or serialized model.

    ``stop_spinning``: its idle threads stop busy-waiting when a run ends, so that several
    sessions timed in turn in one process do not take the CPU from each other.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in available:
        raise ExportError(f"Execution provider '{provider}' is not available. Expected one of "
                          f"{available}. Received: provider={provider!r}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if stop_spinning:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(model, sess_options=options, providers=[provider])
