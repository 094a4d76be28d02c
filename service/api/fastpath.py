"""A short path for the inference routes: matched before FastAPI's router and dependency solver.

Clients call ``predict`` and ``infer`` in a loop, so their per-request cost is the server's
overhead over the model run. FastAPI's request handling (route table scan, dependency solving,
request/response wrappers, exception middleware) costs about 0.5 ms of that on this machine
once a large model run has evicted the caches. :class:`InferenceDispatch` sits innermost among
the app's middlewares: a ``POST`` whose path matches one of :data:`INFERENCE_ROUTES` goes
straight to the same endpoint function the FastAPI route calls, with the same errors; anything
else (other methods, other paths, ``/docs``) continues to FastAPI. The FastAPI routes stay
registered, so the OpenAPI schema still documents these paths.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import tfserving, v2
from service.api.bodies import error_response
from service.dataplane import DataPlane
from service.errors import ServiceError

Endpoint = Callable[[Request, DataPlane, "str | None", "str | None"], Awaitable[Response]]


async def _infer(request: Request, plane: DataPlane, name: str | None, version: str | None) -> Response:
    assert name is not None  # every infer template has {name}
    return await v2.infer_endpoint(request, plane, name, version)


INFERENCE_ROUTES: tuple[tuple[str, Endpoint], ...] = (
    ("/predict", tfserving.predict_endpoint),
    ("/v1/models/{name}:predict", tfserving.predict_endpoint),
    ("/v1/models/{name}/versions/{version}:predict", tfserving.predict_endpoint),
    ("/v2/models/{name}/infer", _infer),
    ("/v2/models/{name}/versions/{version}/infer", _infer),
)
"""Path template -> endpoint; the templates are those of the FastAPI routes in tfserving and v2."""


@dataclass(frozen=True)
class _Route:
    path_format: str  # the template; MetricsMiddleware reads it from scope["route"]
    pattern: re.Pattern[str]
    endpoint: Endpoint


class InferenceDispatch:
    """Serves ``POST`` requests to the inference routes without FastAPI's router (pure ASGI).

    Args:
        app: the rest of the application (FastAPI's exception middleware and router).
        plane: the data plane the endpoints run against.
    """

    def __init__(self, app: ASGIApp, plane: DataPlane) -> None:
        self.app = app
        self.plane = plane
        self.routes = [_Route(template, compile_path(template)[0], endpoint)
                       for template, endpoint in INFERENCE_ROUTES]

    def match(self, path: str) -> tuple[_Route, dict[str, str]] | None:
        """The inference route and path parameters for ``path``, or None."""
        for route in self.routes:
            found = route.pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        matched = self.match(path)
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, params = matched
        scope["route"] = route
        scope["path_params"] = params
        request = Request(scope, receive)
        response: Response
        try:
            response = await route.endpoint(request, self.plane, params.get("name"), params.get("version"))
        except ServiceError as err:
            response = error_response(err)
        await response(scope, receive, send)
