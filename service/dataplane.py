"""The data plane both REST protocols share: served models, readiness, metadata, inference.

Routes parse and validate the wire format, then call :meth:`DataPlane.infer` with an array;
the data plane resolves the model version, validates against its contract and goes through
that model's :class:`~service.batching.DynamicBatcher`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.batching import DynamicBatcher
from service.errors import ModelNotFoundError, ModelNotReadyError, ServiceError
from service.metrics import ServiceMetrics
from service.repository import ModelSource
from service.runtime import LoadedModel, load_model
from service.settings import ServeSettings

logger = logging.getLogger("lc2d.service")
SERVER_NAME = "lc2d-serve"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ("binary_tensor_data", "classification", "model_configuration", "statistics")
"""Open Inference Protocol extensions: binary tensors (HTTP), top-k classes (HTTP and gRPC),
model configuration and statistics (gRPC)."""
_V2_DATATYPES = {"float32": "FP32", "float64": "FP64", "float16": "FP16", "int64": "INT64",
                 "int32": "INT32", "uint8": "UINT8"}


@dataclass
class ServedModel:
    """One model version as the server sees it: loaded and batching, or not ready with a reason."""

    source: ModelSource
    model: LoadedModel | None = None
    error: str | None = None
    batcher: DynamicBatcher | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def version(self) -> str:
        return self.source.version

    @property
    def ready(self) -> bool:
        return self.model is not None and self.batcher is not None and not self.batcher.closing


def load_served_models(sources: Sequence[ModelSource], settings: ServeSettings) -> list[ServedModel]:
    """Loads every source; a required one that fails raises, the others are marked not ready.

    Raises:
        ModelLoadError, ProviderUnavailableError: a required (``--model``) file failed, or the
            requested device is unavailable.
    """
    served = []
    for source in sources:
        try:
            model = load_model(source.path, settings.device, settings.threads,
                               name=source.name, version=source.version, spin=settings.spin,
                               fp16=settings.tensorrt_fp16)
        except ServiceError as err:
            if source.required or err.code == "provider_unavailable":
                raise
            logger.error("model %s version %s is not ready: %s", source.name, source.version, err)
            served.append(ServedModel(source, error=str(err)))
            continue
        model.contract = model.contract.with_limits(max_batch_size=settings.max_batch_size,
                                                    allow_non_finite=settings.allow_non_finite)
        logger.info("loaded model %s version %s from %s, providers %s", source.name, source.version,
                    source.path, model.providers)
        served.append(ServedModel(source, model=model))
    return served


class DataPlane:
    """Served models plus the operations every protocol needs.

    Args:
        served: the loaded (or failed) model versions.
        settings: the server settings (batching, limits, deadline).
        metrics: where batch and inference counts go.
    """

    def __init__(self, served: Sequence[ServedModel], settings: ServeSettings,
                 metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._models: dict[str, dict[str, ServedModel]] = {}
        for item in served:
            self._models.setdefault(item.name, {})[item.version] = item
        names = list(self._models)
        loaded = [item.name for item in served if item.model is not None]
        self.default_model = settings.default_model or next(iter(loaded + names), None)
        if self.default_model is not None and self.default_model not in self._models:
            raise ModelNotFoundError(f"default model {self.default_model!r} is not among the served "
                                     f"models {names}")
        self._stopping = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts a batcher for every loaded model version (needs the running event loop)."""
        for item in self.all_models():
            self.metrics.model_ready(item.name, item.version, item.model is not None)
            if item.model is None:
                continue
            self.metrics.provider_in_use(item.name, item.version, item.model.providers[0])
            item.batcher = DynamicBatcher(
                item.model.run, max_batch_size=self.settings.max_batch_size,
                max_delay_s=self.settings.max_delay_ms / 1000.0, max_queue=self.settings.max_queue,
                observer=self.metrics.batch_observer(item.name, item.version),
                name=f"{item.name}/{item.version}")
            item.batcher.start()

    async def stop(self) -> None:
        """Stops accepting requests and finishes every queued one."""
        self._stopping = True
        for item in self.all_models():
            if item.batcher is not None:
                await item.batcher.close()
            self.metrics.model_ready(item.name, item.version, False)

    # --- lookup --------------------------------------------------------------------------------

    def all_models(self) -> list[ServedModel]:
        return [item for versions in self._models.values() for item in versions.values()]

    def versions(self, name: str) -> dict[str, ServedModel]:
        """Versions of a model by version string, or :class:`ModelNotFoundError` (404)."""
        if name not in self._models:
            raise ModelNotFoundError(f"model {name!r} is not served; served models: {sorted(self._models)}",
                                     expected=sorted(self._models), received=name)
        return self._models[name]

    def find(self, name: str | None, version: str | None = None) -> ServedModel:
        """The requested version, or the highest ready one (else the highest) when none is given.

        Raises:
            ModelNotFoundError: unknown name or version (404).
        """
        if name is None:
            raise ModelNotFoundError("no model is served")
        versions = self.versions(name)
        if version is None:
            ordered = sorted(versions.values(), key=lambda item: _version_key(item.version), reverse=True)
            return next((item for item in ordered if item.model is not None), ordered[0])
        if version not in versions:
            raise ModelNotFoundError(f"model {name!r} has no version {version!r}; versions: "
                                     f"{sorted(versions, key=_version_key)}",
                                     expected=sorted(versions, key=_version_key), received=version)
        return versions[version]

    def find_ready(self, name: str | None, version: str | None = None) -> ServedModel:
        """Like :meth:`find`, raising :class:`ModelNotReadyError` (503) when it cannot run."""
        item = self.find(name, version)
        if not item.ready:
            reason = item.error or "the server is shutting down"
            raise ModelNotReadyError(f"model {item.name!r} version {item.version} is not ready: {reason}")
        return item

    # --- health and metadata -------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True while not shutting down and at least one model version can run."""
        return not self._stopping and any(item.ready for item in self.all_models())

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        """Open Inference Protocol model metadata, plus lc2d details under ``parameters``."""
        item = self.find_ready(name, version)
        assert item.model is not None
        contract = item.model.contract
        return {
            "name": item.name,
            "versions": sorted(self.versions(name), key=_version_key),
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
                "max_batch_size": self.settings.max_batch_size,
                "metadata": dict(contract.metadata),
            },
        }

    # --- inference -----------------------------------------------------------------------------

    async def infer(self, item: ServedModel, batch: np.ndarray,
                    deadline_s: float | None = None) -> dict[str, np.ndarray]:
        """Runs an already validated batch through the model's batcher.

        Args:
            item: the model version (from :meth:`find_ready`).
            batch: the validated batch.
            deadline_s: seconds the client still waits (a gRPC deadline); the request's
                deadline is the shorter of it and ``request_timeout_ms``.

        Returns:
            Output name -> this request's rows.
        """
        if item.batcher is None or not item.ready:
            raise ModelNotReadyError(f"model {item.name!r} version {item.version} is not ready")
        timeout_s = self.settings.request_timeout_ms / 1000.0
        if deadline_s is not None:
            timeout_s = min(timeout_s, max(deadline_s, 0.0))
        outputs = await item.batcher.submit(batch, timeout_s=timeout_s)
        self.metrics.inferred(item.name, item.version, len(batch))
        return outputs


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _v2_shape(shape: Sequence[int | None]) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]
