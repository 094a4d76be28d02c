"""ONNX Runtime sessions: provider choice, model loading, and one call to run a batch.

This is the one place that creates ``onnxruntime.InferenceSession`` objects; the HTTP service
(through its batcher) and batch scoring (``lc2d score``) both use :func:`load_model`.

Example:
    >>> model = load_model("artifacts/models/digits/1/model.onnx", device="cpu")
    >>> batch = model.contract.validate_batch(images)      # float32, shape checked
    >>> probabilities = model.run(batch)["probabilities"]
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.contract import SUPPORTED_INPUT_DTYPES, InputContract
from service.errors import InferenceFailedError, ModelLoadError
from service.providers import CUDA, TENSORRT, plan_providers

logger = logging.getLogger("lc2d.service")


@dataclass
class LoadedModel:
    """A model ready to run: its session, contract and the providers actually in use.

    Attributes:
        name: the name it is served under.
        version: its version string (``"1"`` for a single file).
        path: the ``.onnx`` file.
        contract: what one instance must look like.
        providers: execution providers the session really uses, in priority order.
        session: the ``onnxruntime.InferenceSession``.
        output_device: where outputs are bound with ONNX Runtime I/O binding (``"cuda"`` when
            the session runs on a GPU: the batch is copied to the device once and every output
            read back once, without ORT's per-run feed/fetch copies); None runs plainly.
    """

    name: str
    version: str
    path: Path
    contract: InputContract
    providers: list[str]
    session: Any
    output_device: str | None = None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one already validated float32 batch.

        Args:
            batch: ``[batch, *contract.instance_shape]`` float32 array.

        Returns:
            Output name -> array whose first axis is the batch, in graph output order.

        Raises:
            InferenceFailedError: when ONNX Runtime raises.
        """
        names = list(self.contract.output_names)
        try:
            if self.output_device is None:
                values = self.session.run(names, {self.contract.input_name: batch})
            else:
                values = self._run_bound(names, batch, self.output_device)
        except Exception as err:  # ORT raises its own exception types; wrap them all
            raise InferenceFailedError(f"model {self.name!r} failed to run a batch of "
                                       f"{len(batch)}: {err}") from err
        return dict(zip(names, values, strict=True))

    def _run_bound(self, names: list[str], batch: np.ndarray, device: str) -> list[np.ndarray]:
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.contract.input_name, np.ascontiguousarray(batch))
        for name in names:
            binding.bind_output(name, device)
        self.session.run_with_iobinding(binding)
        values: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return values


def load_model(path: str | Path, device: str = "auto", threads: int | None = None,
               *, name: str | None = None, version: str = "1", spin: bool = True,
               fp16: bool = False) -> LoadedModel:
    """Loads an ``.onnx`` file into an ONNX Runtime session.

    Args:
        path: the model file.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"`` (see
            :func:`service.providers.plan_providers`).
        threads: intra-op threads; ``None`` lets ONNX Runtime decide.
        name: the served name; defaults to the file's stem (the parent's parent directory in a
            repository is passed explicitly by the caller).
        version: the served version string.
        spin: let idle intra-op threads busy-wait while a run is in progress and stop spinning
            when it ends (``session.force_spinning_stop``). ONNX Runtime's default keeps them
            spinning after the run, which takes the CPU from the server's own work on a small
            machine. ``False``: they never spin.
        fp16: with ``device="tensorrt"``, let TensorRT build fp16 engines.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: file missing, unreadable, not ONNX, or with an input the service cannot
            serve (not exactly one float32 input).
        ProviderUnavailableError: ``device="cuda"``/``"tensorrt"`` without that provider in use.
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist", path=str(path))
    plan = plan_providers(device, path, fp16=fp16)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if spin:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=plan.providers)
    except Exception as err:  # ORT reports corrupt files with several exception types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model file {str(path)!r} is not a loadable ONNX model: {reason}",
                             path=str(path)) from err
    used = list(session.get_providers())
    plan.check_in_use(used)
    contract = InputContract.from_session(session)
    if contract.dtype not in SUPPORTED_INPUT_DTYPES:
        raise ModelLoadError(f"model {str(path)!r} takes {contract.dtype} input, expected one of "
                             f"{list(SUPPORTED_INPUT_DTYPES)}", path=str(path))
    return LoadedModel(name=name or path.stem, version=version, path=path, contract=contract,
                       providers=used, session=session, output_device=_output_device(used))


def _output_device(used: list[str]) -> str | None:
    """``"cuda"`` when the session's first provider computes on an NVIDIA GPU, else None."""
    return "cuda" if used and used[0] in (CUDA, TENSORRT) else None


class InstancePool:
    """The ONNX Runtime sessions of one model version; each run borrows a free one.

    The batcher runs up to ``len(instances)`` batches at once (one worker thread each), so a
    run always finds a session free; the queue only guards against a caller running more.

    Args:
        instances: loaded sessions of the same file (at least one).
    """

    def __init__(self, instances: Sequence[LoadedModel]) -> None:
        if not instances:
            raise ValueError("expected at least one loaded instance, received none")
        self.instances = list(instances)
        self._free: queue.SimpleQueue[LoadedModel] = queue.SimpleQueue()
        for instance in self.instances:
            self._free.put(instance)

    @property
    def first(self) -> LoadedModel:
        """The first session: its contract and providers stand for all of them."""
        return self.instances[0]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Runs one validated batch on a free session (blocking: call it from a worker thread)."""
        instance = self._free.get()
        try:
            return instance.run(batch)
        finally:
            self._free.put(instance)

    def close(self) -> None:
        """Drops the sessions, so ONNX Runtime frees their memory once no run holds them."""
        self.instances.clear()
        self._free = queue.SimpleQueue()


def load_instances(path: str | Path, count: int, device: str = "auto", threads: int | None = None,
                   *, name: str | None = None, version: str = "1", spin: bool = True,
                   fp16: bool = False) -> InstancePool:
    """Loads ``count`` sessions of one file (see :func:`load_model` for the arguments and errors)."""
    return InstancePool([load_model(path, device, threads, name=name, version=version, spin=spin, fp16=fp16)
                         for _ in range(count)])
