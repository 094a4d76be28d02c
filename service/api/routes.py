"""The route table: every HTTP route of the service, declared once.

``service.app.create_app`` builds the FastAPI router (and so ``/openapi.json`` and ``/docs``)
from :data:`ROUTES` with :func:`service.api.routing.build_router`, and serves the routes marked
fast (every ``POST`` unless ``fast=False``) with :class:`service.api.fastpath.FastPathDispatch`,
which skips FastAPI's router and dependency solver. Both call the same endpoint through
:func:`service.api.routing.respond`, where a ``ServiceError`` becomes its JSON answer.

To add a route:
    1. Write the endpoint in its protocol module (``service/api/tfserving.py``, ``v2.py``,
       ``operations.py``, or a new one): ``async def load(call: Call) -> Response`` with a
       docstring (it becomes the OpenAPI description). Read path parameters from ``call.params``
       (``call.name`` and ``call.version`` for ``{name}`` and ``{version}``), the data plane from
       ``call.plane``, the request from ``call.request``; raise ``ServiceError`` subclasses for
       anything the client did wrong, never return an error response yourself.
    2. Add one ``Route(...)`` below, in its protocol's group: method, path template, endpoint,
       one-line summary, tag, ``ok`` (the pydantic model of the 200 answer, in
       ``service/api/schemas.py``) and ``errors`` (the ``ServiceError`` classes it can raise;
       each status appears in OpenAPI with the error body). A ``POST`` is on the fast path by
       default; set ``fast=False`` for a rare, slow one (a model load) so it goes through FastAPI.
    3. Test it through the real app (tests/service/test_api_routes.py); the table test checks
       that the OpenAPI schema and the fast path agree with this table.
"""

from __future__ import annotations

from typing import Any

from service.api import operations, repository, schemas, tfserving, tfserving_models, v2
from service.api.bodies import NPY, OCTET
from service.api.routing import Route
from service.errors import (
    BatchTooLargeError,
    DeadlineExceededError,
    InferenceFailedError,
    InvalidInputError,
    InvalidModelConfigError,
    MalformedRequestError,
    ModelControlDisabledError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotReadyError,
    NotAcceptableError,
    PayloadTooLargeError,
    QueueFullError,
    ServiceError,
    UnsupportedMediaTypeError,
)
from service.metrics import CONTENT_TYPE

TFSERVING = "predict (TensorFlow Serving format)"
V2 = "Open Inference Protocol (v2)"
REPOSITORY = "model repository (Open Inference Protocol extension)"
OPERATIONS = "operations"

# What any inference request can meet, from the body to the batcher.
INFERENCE_ERRORS: tuple[type[ServiceError], ...] = (
    MalformedRequestError, ModelNotFoundError, NotAcceptableError, PayloadTooLargeError,
    UnsupportedMediaTypeError, InvalidInputError, BatchTooLargeError, ModelNotReadyError, QueueFullError,
    DeadlineExceededError, InferenceFailedError)
V2_INFERENCE_ERRORS = tuple(e for e in INFERENCE_ERRORS if e is not NotAcceptableError)
CONTROL_BODY_ERRORS: tuple[type[ServiceError], ...] = (MalformedRequestError, PayloadTooLargeError)
PREDICT: dict[str, Any] = {"ok": schemas.PredictResponse, "media_types": (NPY,), "errors": INFERENCE_ERRORS,
                           "openapi_extra": tfserving.predict_request_docs}
CLASSIFY: dict[str, Any] = {"ok": schemas.ClassifyResponse, "errors": V2_INFERENCE_ERRORS}  # JSON only
REGRESS: dict[str, Any] = {"ok": schemas.RegressResponse, "errors": V2_INFERENCE_ERRORS}
STATUS: dict[str, Any] = {"ok": schemas.ModelStatus, "errors": (ModelNotFoundError, ModelNotReadyError)}
METADATA: dict[str, Any] = {"ok": schemas.TFModelMetadata, "errors": (ModelNotFoundError, ModelNotReadyError)}
INFER: dict[str, Any] = {"ok": schemas.InferResponse, "media_types": (OCTET,), "errors": V2_INFERENCE_ERRORS,
                         "openapi_extra": v2.infer_request_docs}

ROUTES: tuple[Route, ...] = (
    # --- TensorFlow Serving REST ------------------------------------------------------------------
    Route("POST", "/predict", tfserving.predict, "Predict with the default model", TFSERVING, **PREDICT),
    Route("POST", "/v1/models/{name}:predict", tfserving.predict,
          "Predict with a named model, its highest ready version", TFSERVING, **PREDICT),
    Route("POST", "/v1/models/{name}/versions/{version}:predict", tfserving.predict,
          "Predict with one version of a named model", TFSERVING, **PREDICT),
    Route("POST", "/v1/models/{name}/labels/{label}:predict", tfserving.predict,
          "Predict with the version a label (config labels, stable, canary) names", TFSERVING, **PREDICT),
    Route("POST", "/v1/models/{name}:classify", tfserving_models.classify,
          "Top classes with labels and scores per example", TFSERVING, **CLASSIFY),
    Route("POST", "/v1/models/{name}/versions/{version}:classify", tfserving_models.classify,
          "Classify with one version", TFSERVING, **CLASSIFY),
    Route("POST", "/v1/models/{name}/labels/{label}:classify", tfserving_models.classify,
          "Classify with the version a label names", TFSERVING, **CLASSIFY),
    Route("POST", "/v1/models/{name}:regress", tfserving_models.regress,
          "One value per example (single-output models)", TFSERVING, **REGRESS),
    Route("POST", "/v1/models/{name}/versions/{version}:regress", tfserving_models.regress,
          "Regress with one version", TFSERVING, **REGRESS),
    Route("POST", "/v1/models/{name}/labels/{label}:regress", tfserving_models.regress,
          "Regress with the version a label names", TFSERVING, **REGRESS),
    Route("GET", "/v1/models/{name}", tfserving_models.model_status,
          "Model status: the state of every version", TFSERVING, **STATUS),
    Route("GET", "/v1/models/{name}/versions/{version}", tfserving_models.model_status,
          "Model version status", TFSERVING, **STATUS),
    Route("GET", "/v1/models/{name}/labels/{label}", tfserving_models.model_status,
          "Status of the version a label names", TFSERVING, **STATUS),
    Route("GET", "/v1/models/{name}/metadata", tfserving_models.model_metadata,
          "Model metadata: the serving_default signature", TFSERVING, **METADATA),
    Route("GET", "/v1/models/{name}/versions/{version}/metadata", tfserving_models.model_metadata,
          "Model version metadata", TFSERVING, **METADATA),
    Route("GET", "/v1/models/{name}/labels/{label}/metadata", tfserving_models.model_metadata,
          "Metadata of the version a label names", TFSERVING, **METADATA),
    # --- Open Inference Protocol (KServe v2) ----------------------------------------------------
    Route("GET", "/v2", v2.server_metadata, "Server metadata", V2, ok=schemas.ServerMetadata),
    Route("GET", "/v2/health/live", v2.live, "Server liveness", V2, ok=schemas.Liveness),
    Route("GET", "/v2/health/ready", v2.ready, "Server readiness", V2, ok=schemas.Readiness,
          other_answers={503: schemas.Readiness}),
    Route("GET", "/v2/models/stats", repository.model_statistics, "Inference statistics of every model",
          V2, ok=schemas.InferenceStatistics),
    Route("GET", "/v2/models/{name}", v2.model_metadata, "Model metadata (highest ready version)", V2,
          ok=schemas.ModelMetadata, errors=(ModelNotFoundError, ModelNotReadyError)),
    Route("GET", "/v2/models/{name}/versions/{version}", v2.model_metadata, "Model version metadata", V2,
          ok=schemas.ModelMetadata, errors=(ModelNotFoundError, ModelNotReadyError)),
    Route("GET", "/v2/models/{name}/ready", v2.model_ready, "Model readiness", V2,
          ok=schemas.ModelReadiness, errors=(ModelNotFoundError,),
          other_answers={503: schemas.ModelReadiness}),
    Route("GET", "/v2/models/{name}/versions/{version}/ready", v2.model_ready, "Model version readiness",
          V2, ok=schemas.ModelReadiness, errors=(ModelNotFoundError,),
          other_answers={503: schemas.ModelReadiness}),
    Route("POST", "/v2/models/{name}/infer", v2.infer, "Inference (highest ready version)", V2, **INFER),
    Route("POST", "/v2/models/{name}/versions/{version}/infer", v2.infer, "Inference with one version",
          V2, **INFER),
    Route("GET", "/v2/models/{name}/config", repository.model_config, "Model configuration", V2,
          ok=schemas.ModelConfigAnswer, errors=(ModelNotFoundError, ModelNotReadyError)),
    Route("GET", "/v2/models/{name}/stats", repository.model_statistics, "Model inference statistics", V2,
          ok=schemas.InferenceStatistics, errors=(ModelNotFoundError,)),
    Route("GET", "/v2/models/{name}/versions/{version}/stats", repository.model_statistics,
          "Model version inference statistics", V2, ok=schemas.InferenceStatistics,
          errors=(ModelNotFoundError,)),
    # --- model repository (control plane) -----------------------------------------------------------
    Route("POST", "/v2/repository/index", repository.repository_index, "Repository index", REPOSITORY,
          ok=schemas.RepositoryIndex, errors=CONTROL_BODY_ERRORS, fast=False),
    Route("POST", "/v2/repository/models/{name}/load", repository.load_model, "Load or reload a model",
          REPOSITORY, ok=schemas.ModelControlAnswer, fast=False,
          errors=(*CONTROL_BODY_ERRORS, InvalidModelConfigError, ModelControlDisabledError,
                  ModelNotFoundError, ModelLoadError)),
    Route("POST", "/v2/repository/models/{name}/unload", repository.unload_model, "Unload a model",
          REPOSITORY, ok=schemas.ModelControlAnswer, fast=False,
          errors=(*CONTROL_BODY_ERRORS, ModelControlDisabledError, ModelNotFoundError)),
    # --- operations -----------------------------------------------------------------------------------
    Route("GET", "/metrics", operations.prometheus_metrics, "Prometheus metrics", OPERATIONS,
          media_types=(CONTENT_TYPE,)),
    Route("GET", "/healthz", operations.healthz, "Liveness", OPERATIONS, ok=schemas.Liveness),
    Route("GET", "/", operations.docs_redirect, "Redirect to /docs", OPERATIONS, include_in_schema=False),
)
"""Every route of the service; see the module docstring for how to add one."""
