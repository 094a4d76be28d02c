"""The data plane both REST protocols share: served models, readiness, metadata, inference.

Routes take a ready model version from :meth:`DataPlane.serving` (a lease: the version is not
unloaded while they use it), validate the wire format against its contract and its
configuration's limits, then call :meth:`DataPlane.infer` with an array, which goes through
that version's :class:`~service.batching.DynamicBatcher`. Which versions exist, and in which
state, is the model registry's business (``service.registry``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np

from lc2d import __version__
from service.errors import ModelNotFoundError, ModelNotReadyError
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, ModelVersion, VersionState
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service")
SERVER_NAME = "lc2d-serve"
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "statistics")
"""Open Inference Protocol extensions: binary tensors (HTTP), top-k classes, model configuration
and statistics (HTTP and gRPC)."""
_V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64",
                 "int32": "INT32", "uint8": "UINT8"}


class DataPlane:
    """The operations every protocol needs, on the versions the model registry holds.

    Args:
        registry: the model registry (control plane) with its models already loaded.
        settings: the server settings (body size limit, default model).
        metrics: where inference counts go.

    Raises:
        ModelNotFoundError: ``settings.default_model`` names no model of the registry.
    """

    def __init__(self, registry: ModelRegistry, settings: ServeSettings, metrics: ServiceMetrics) -> None:
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        names = registry.names()
        # Where no model can arrive later, a default that names none of them is a mistake now.
        if settings.default_model is not None and settings.default_model not in names \
                and registry.mode == "none":
            raise ModelNotFoundError(f"default model {settings.default_model!r} is not among the served "
                                     f"models {names}")
        self._default_model = settings.default_model or self._first_model()
        self._stopping = False

    @property
    def default_model(self) -> str | None:
        """The model ``POST /predict`` uses: ``--default-model``, else the first ``--model`` file,
        else the first model (by name) with a version loaded, else the first model; chosen once
        there is one (a repository may start empty in poll or explicit mode)."""
        if self._default_model is None:
            self._default_model = self._first_model()
        return self._default_model

    def _first_model(self) -> str | None:
        names = self.registry.names()
        files = [path.stem for path in self.registry.catalog.files if path.stem in names]
        loaded = [item.name for item in self.registry.all_versions() if item.model is not None]
        return next(iter(files + loaded + names), None)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Makes the loaded versions ready (needs the running event loop)."""
        await self.registry.start()

    async def stop(self) -> None:
        """Stops accepting requests and finishes every queued one."""
        self._stopping = True
        await self.registry.stop()

    # --- lookup --------------------------------------------------------------------------------

    def all_models(self) -> list[ModelVersion]:
        return self.registry.all_versions()

    def versions(self, name: str) -> dict[str, ModelVersion]:
        """Versions of a model by version string, or :class:`ModelNotFoundError` (404)."""
        return self.registry.versions(name)

    def find(self, name: str | None, version: str | None = None) -> ModelVersion:
        """The requested version, or the one requests without a version go to.

        Raises:
            ModelNotFoundError: unknown name or version (404).
        """
        if name is None:
            raise ModelNotFoundError("no model is served")
        return self.registry.find(name, version)

    def find_ready(self, name: str | None, version: str | None = None) -> ModelVersion:
        """Like :meth:`find`, raising :class:`ModelNotReadyError` (503) when it cannot run."""
        if self._stopping:
            raise ModelNotReadyError("the server is shutting down")
        if name is None:
            raise ModelNotFoundError("no model is served")
        return self.registry.find_ready(name, version)

    def serving(self, name: str | None,
                version: str | None = None) -> AbstractAsyncContextManager[ModelVersion]:
        """A ready version (``name`` None: the default model) held until the block ends, so a
        version being replaced finishes this request instead of failing it."""
        if self._stopping:
            raise ModelNotReadyError("the server is shutting down")
        resolved = self.default_model if name is None else name
        if resolved is None:
            raise ModelNotFoundError("no model is served")
        return self.registry.lease(resolved, version)

    # --- health and metadata -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while not shutting down and at least one model version can run."""
        return not self._stopping and self.registry.any_ready

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Open Inference Protocol model metadata, plus lc2d details under ``parameters``."""
        item = self.find_ready(name, version)
        assert item.model is not None
        contract = item.model.contract
        return {
            "name": item.name,
            "versions": [v for v, other in self.versions(item.name).items()
                         if other.state is not VersionState.UNLOADED],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": contract.input_name, "datatype": "FP32",
                        "shape": _v2_shape(contract.batch_shape)}],
            "outputs": [{"name": spec.name, "datatype": _V2_DATATYPES.get(spec.dtype, spec.dtype.upper()),
                         "shape": _v2_shape((None, *spec.instance_shape))} for spec in contract.outputs],
            "parameters": {
                "version": item.version,
                "providers": item.model.providers,
                "data_format": contract.data_format,
                "labels": list(contract.labels) if contract.labels else None,
                "max_batch_size": item.config.max_batch_size,
                "metadata": dict(contract.metadata),
            },
        }

    # --- inference -----------------------------------------------------------------------------

    def admit(self, item: ModelVersion) -> None:
        """Raises QueueFullError (503) when ``item``'s queue is full: routes ask before they read a
        body, so an overloaded server refuses without reading, parsing or validating anything."""
        if item.batcher is not None:
            item.batcher.refuse_if_full()

    async def infer(self, item: ModelVersion, batch: np.ndarray,
                    deadline_s: float | None = None) -> dict[str, np.ndarray]:
        """Runs a batch validated against ``item.contract`` and ``item.limits`` through its batcher.

        A version that is draining still runs the requests that hold a lease on it.

        Args:
            item: the model version (from :meth:`find_ready`).
            batch: the validated batch.
            deadline_s: seconds the client still waits (a gRPC deadline); the request's
                deadline is the shorter of it and ``request_timeout_ms``.

        Returns:
            Output name -> this request's rows.
        """
        if item.batcher is None or item.batcher.closing:
            raise ModelNotReadyError(item.not_ready_message())
        timeout_s = item.config.request_timeout_ms / 1000.0
        if deadline_s is not None:
            timeout_s = min(timeout_s, max(deadline_s, 0.0))
        outputs = await item.batcher.submit(batch, timeout_s=timeout_s)
        self.metrics.inferred(item.name, item.version, len(batch))
        return outputs


def _v2_shape(shape: Sequence[int | None]) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]
