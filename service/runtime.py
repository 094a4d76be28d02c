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
from typing import Any, Literal

import numpy as np

from service.contract import SUPPORTED_INPUT_DTYPES, InputContract
from service.errors import InferenceFailedError, ModelLoadError, ProviderUnavailableError

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

logger = logging.getLogger("lc2d.service")


def select_providers(device: str, available: list[str] | None = None) -> list[str]:
    """Chooses ONNX Runtime execution providers for a device setting.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
        available: providers this ONNX Runtime build offers; defaults to
            ``onnxruntime.get_available_providers()``.

    Returns:
        Providers in priority order, always ending with the CPU provider.

    Raises:
        ValueError: for an unknown device name.
        ProviderUnavailableError: ``"cuda"`` when this build has no CUDA provider.
    """
    if device not in DEVICES:
        raise ValueError(f"expected device to be one of {list(DEVICES)}, received {device!r}")
    if available is None:
        import onnxruntime

        available = list(onnxruntime.get_available_providers())
    has_cuda = CUDA in available
    if device == "cuda" and not has_cuda:
        raise ProviderUnavailableError(
            f"--device cuda needs {CUDA}, but this onnxruntime offers only {available}; "
            "install onnxruntime-gpu on a machine with an NVIDIA GPU, or use --device auto/cpu")
    if device == "cpu" or not has_cuda:
        return [CPU]
    return [CUDA, CPU]


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
    """

    name: str
    version: str
    path: Path
    contract: InputContract
    providers: list[str]
    session: Any

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
            values = self.session.run(names, {self.contract.input_name: batch})
        except Exception as err:  # ORT raises its own exception types; wrap them all
            raise InferenceFailedError(f"model {self.name!r} failed to run a batch of "
                                       f"{len(batch)}: {err}") from err
        return dict(zip(names, values, strict=True))


def load_model(path: str | Path, device: str = "auto", threads: int | None = None,
               *, name: str | None = None, version: str = "1", spin: bool = True) -> LoadedModel:
    """Loads an ``.onnx`` file into an ONNX Runtime session.

    Args:
        path: the model file.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`select_providers`).
        threads: intra-op threads; ``None`` lets ONNX Runtime decide.
        name: the served name; defaults to the file's stem (the parent's parent directory in a
            repository is passed explicitly by the caller).
        version: the served version string.
        spin: let idle intra-op threads busy-wait while a run is in progress and stop spinning
            when it ends (``session.force_spinning_stop``). ONNX Runtime's default keeps them
            spinning after the run, which takes the CPU from the server's own work on a small
            machine. ``False``: they never spin.

    Returns:
        The loaded model.

    Raises:
        ModelLoadError: file missing, unreadable, not ONNX, or with an input the service cannot
            serve (not exactly one float32 input).
        ProviderUnavailableError: ``device="cuda"`` without a usable CUDA provider.
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist", path=str(path))
    providers = select_providers(device)
    options = onnxruntime.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    if spin:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # ORT reports corrupt files with several exception types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"model file {str(path)!r} is not a loadable ONNX model: {reason}",
                             path=str(path)) from err
    used = list(session.get_providers())
    if device == "cuda" and CUDA not in used:
        raise ProviderUnavailableError(
            f"--device cuda: onnxruntime could not start {CUDA} (no usable GPU?); providers in use: {used}")
    contract = InputContract.from_session(session)
    if contract.dtype not in SUPPORTED_INPUT_DTYPES:
        raise ModelLoadError(f"model {str(path)!r} takes {contract.dtype} input, expected one of "
                             f"{list(SUPPORTED_INPUT_DTYPES)}", path=str(path))
    return LoadedModel(name=name or path.stem, version=version, path=path, contract=contract,
                       providers=used, session=session)


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

    def warm_up(self, batch_sizes: Sequence[int], seed: int = 0) -> None:
        """Runs every session once per batch size on random inputs, so that ONNX Runtime's
        first-run costs (memory arena growth, kernel selection) are paid before requests come.

        Free dimensions (models without metadata) are taken as 1.
        """
        contract = self.first.contract
        shape = [d or 1 for d in contract.instance_shape]
        rng = np.random.default_rng(seed)
        for size in batch_sizes:
            batch = rng.random((size, *shape), dtype=np.float32)
            for instance in self.instances:
                instance.run(batch)

    def close(self) -> None:
        """Drops the sessions, so ONNX Runtime frees their memory once no run holds them."""
        self.instances.clear()
        self._free = queue.SimpleQueue()


def load_instances(path: str | Path, count: int, device: str = "auto", threads: int | None = None,
                   *, name: str | None = None, version: str = "1", spin: bool = True) -> InstancePool:
    """Loads ``count`` sessions of one file (see :func:`load_model` for the arguments and errors)."""
    return InstancePool([load_model(path, device, threads, name=name, version=version, spin=spin)
                         for _ in range(count)])
