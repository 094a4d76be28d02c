"""What a route is, how it answers, and how the FastAPI router is built from a table of them.

A :class:`Route` declares one HTTP operation: method, path template, endpoint, OpenAPI summary,
the schema of its 200 answer and the :class:`~service.errors.ServiceError` classes it can
answer with. The table of every route is :data:`service.api.routes.ROUTES`; from it
:func:`build_router` builds the FastAPI router (and so the OpenAPI schema), and
:class:`service.api.fastpath.FastPathDispatch` serves the ``fast`` routes (every ``POST`` by
default) without FastAPI's router.

Errors become responses here and nowhere else: :func:`respond` runs an endpoint for both the
router and the fast path and turns a ``ServiceError`` into its JSON answer, and
:func:`install_error_handlers` does the same for the errors FastAPI raises itself (unknown path,
wrong method) and for ``ServiceError`` raised outside an endpoint (a middleware, a dependency).
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from service.api.bodies import error_response
from service.dataplane import DataPlane
from service.errors import HTTPRouteError, InternalServerError, InvalidRequestFieldsError, ServiceError

logger = logging.getLogger("lc2d.service")


@dataclass(frozen=True, slots=True)
class Call:
    """One request as an endpoint sees it.

    Attributes:
        request: the Starlette request (headers, body stream, ``app``).
        plane: the data plane of the app that received it.
        params: the path parameters of the route template (``{"name": "digits"}``).
    """

    request: Request
    plane: DataPlane
    params: Mapping[str, str]

    @property
    def name(self) -> str | None:
        """The ``{name}`` path parameter, None when the template has none."""
        return self.params.get("name")

    @property
    def version(self) -> str | None:
        """The ``{version}`` path parameter, None when the template has none."""
        return self.params.get("version")


Endpoint = Callable[[Call], Awaitable[Response]]
"""An endpoint answers one call; it raises :class:`ServiceError` for anything a client did wrong."""

OpenAPIExtra = Callable[[DataPlane], dict[str, Any]]
"""Builds a route's extra OpenAPI fields (request body examples) from the served models."""


@dataclass(frozen=True)
class Route:
    """One HTTP operation of the service.

    Attributes:
        method: the HTTP method.
        path: the path template, Starlette syntax (``/v2/models/{name}/infer``).
        endpoint: the function that answers.
        summary: one line for the OpenAPI operation (and ``/docs``).
        tag: the OpenAPI group.
        ok: the schema of the 200 JSON answer (documentation only: endpoints build their responses).
        media_types: what a 200 answer can be, besides JSON when ``ok`` is set (``.npy``,
            binary tensors, Prometheus text).
        errors: the errors the endpoint can answer with; each status is documented with the
            error body schema and the codes of these classes.
        other_answers: statuses other than 200 answered with a body that is not an error
            (readiness answers 503 with ``{"ready": false}``), and their schema.
        fast: served by the fast path, before FastAPI's router; None means "when POST".
        openapi_extra: request body documentation built from the served models.
        include_in_schema: False for routes that are not part of the API (``GET /``).
    """

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    endpoint: Endpoint
    summary: str
    tag: str
    ok: type[BaseModel] | None = None
    media_types: tuple[str, ...] = ()
    errors: tuple[type[ServiceError], ...] = ()
    other_answers: Mapping[int, type[BaseModel]] = field(default_factory=dict)
    fast: bool | None = None
    openapi_extra: OpenAPIExtra | None = field(default=None, repr=False)
    include_in_schema: bool = True

    @property
    def is_fast(self) -> bool:
        """Whether the fast path serves this route."""
        return self.method == "POST" if self.fast is None else self.fast

    @property
    def path_params(self) -> list[str]:
        """The parameter names of the path template, in order."""
        return list(compile_path(self.path)[2])


async def respond(route: Route, call: Call) -> Response:
    """Runs the route's endpoint; a :class:`ServiceError` becomes its JSON error answer.

    Every error is logged in one line with the request id (``X-Request-ID`` from the client, or
    a new one), which the answer carries too. An exception that is not a ``ServiceError`` is a
    bug of the server: its traceback goes to the log, the client gets a JSON 500 naming only the
    request id, and the connection stays usable.
    """
    try:
        return await route.endpoint(call)
    except ServiceError as err:
        return answer_error(call.request, err)
    except Exception:
        rid = request_id(call.request)
        logger.exception("request %s %s %s: internal error", rid, call.request.method, call.request.url.path)
        return answer_error(call.request, InternalServerError(
            f"internal error; the server log has the details under request id {rid}", request_id=rid))


def answer_error(request: Request, err: ServiceError) -> Response:
    """Logs a service error in one line (with the request id) and builds its answer."""
    rid = request_id(request)
    level = logging.WARNING if err.status_code >= 500 else logging.INFO
    logger.log(level, "request %s %s %s -> %d %s: %s", rid, request.method, request.url.path,
               err.status_code, err.code, err.message)
    return error_response(err, headers={"X-Request-ID": rid})


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(request: Request) -> str:
    """The client's ``X-Request-ID`` when it is a short plain token, else a new random id."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]


def build_router(routes: Sequence[Route], plane: DataPlane) -> APIRouter:
    """The FastAPI router of ``routes``, answering against ``plane``."""
    router = APIRouter()
    for route in routes:
        router.add_api_route(
            route.path, _fastapi_endpoint(route, plane), methods=[route.method], tags=[route.tag],
            summary=route.summary, description=inspect.getdoc(route.endpoint) or "",
            responses=openapi_responses(route), name=route.endpoint.__name__,
            openapi_extra=_openapi_extra(route, plane),
            response_class=Response if route.ok is None else JSONResponse,
            include_in_schema=route.include_in_schema)
    return router


def openapi_responses(route: Route) -> dict[int | str, dict[str, Any]]:
    """The documented answers of a route: its 200 schema and one entry per error status."""
    responses: dict[int | str, dict[str, Any]] = {}
    ok: dict[str, Any] = {"description": "Successful Response"}
    if route.ok is not None:
        ok["model"] = route.ok
    if route.media_types:
        binary = {"schema": {"type": "string", "format": "binary"}}
        ok["content"] = {kind: binary for kind in route.media_types}
    if len(ok) > 1:
        responses[200] = ok
    codes: dict[int, list[str]] = {}
    for error in route.errors:
        for kind in _with_subclasses(error):
            codes.setdefault(kind.status_code, []).append(kind.code)
    for status, schema in route.other_answers.items():
        responses[status] = {"model": schema, "description": (schema.__doc__ or "").strip()}
    for status, names in sorted(codes.items()):
        responses[status] = {"model": ErrorBody, "description": "error codes: " + ", ".join(
            dict.fromkeys(names))}
    return responses


def _with_subclasses(error: type[ServiceError]) -> list[type[ServiceError]]:
    found = [error]
    for sub in error.__subclasses__():
        found += _with_subclasses(sub)
    return found


class ErrorBody(BaseModel):
    """Every error answer: a message, a stable code, and details (typically expected/received)."""

    model_config = {"extra": "allow"}

    error: str
    code: str


def _fastapi_endpoint(route: Route, plane: DataPlane) -> Callable[[Request], Awaitable[Response]]:
    """A FastAPI endpoint for ``route``; FastAPI validates nothing, so it never answers its own 422."""

    async def endpoint(request: Request) -> Response:
        return await respond(route, Call(request, plane, request.path_params))

    endpoint.__name__ = route.endpoint.__name__
    return endpoint


def _openapi_extra(route: Route, plane: DataPlane) -> dict[str, Any]:
    """The path parameters (all strings) and the route's own extra fields (request body)."""
    extra: dict[str, Any] = {"parameters": [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "title": name.title()}}
        for name in route.path_params]}
    if route.openapi_extra is not None:
        extra.update(route.openapi_extra(plane))
    return extra


def install_error_handlers(app: FastAPI) -> None:
    """Turns the errors raised outside endpoints into the same JSON error answers."""

    async def service_error(request: Request, err: Exception) -> Response:
        assert isinstance(err, ServiceError)
        return answer_error(request, err)

    async def validation_error(_: Request, err: Exception) -> Response:
        assert isinstance(err, RequestValidationError)
        return error_response(InvalidRequestFieldsError(f"invalid request: {err.errors()}"))

    async def http_error(_: Request, err: Exception) -> Response:
        assert isinstance(err, HTTPException)
        refused = HTTPRouteError(str(err.detail), status_code=err.status_code)
        refused.headers.update(err.headers or {})
        return error_response(refused)

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
