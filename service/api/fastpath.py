"""A short path for the fast routes (every ``POST``): matched before FastAPI's router.

Clients call ``predict`` and ``infer`` in a loop, so their per-request cost is the server's
overhead over the model run. FastAPI's request handling (route table scan, dependency solving,
request/response wrappers, exception middleware) is a measurable share of that once a large
model run has evicted the caches. :class:`FastPathDispatch` sits innermost among the app's
middlewares: a request whose method and path match a fast route of the table
(:data:`service.api.routes.ROUTES`) goes straight to that route's endpoint through
:func:`~service.api.routing.respond`, exactly as the FastAPI route would; anything else (other
methods, other paths, ``/docs``) continues to FastAPI. The FastAPI routes are built from the same
table, so the OpenAPI schema documents these paths too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import Request, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.routing import Call, Route, respond
from service.dataplane import DataPlane


class FastPathDispatch:
    """Serves the fast routes without FastAPI's router (pure ASGI).

    Args:
        app: the rest of the application (FastAPI's exception middleware and router).
        plane: the data plane the endpoints run against.
        routes: the route table; only the routes whose ``is_fast`` is true are served here.
    """

    def __init__(self, app: ASGIApp, plane: DataPlane, routes: Sequence[Route]) -> None:
        self.app = app
        self.plane = plane
        self.routes: dict[str, list[tuple[re.Pattern[str], Route]]] = {}
        for route in routes:
            if route.is_fast:
                self.routes.setdefault(route.method, []).append((compile_path(route.path)[0], route))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The fast route and path parameters for ``method`` and ``path``, or None."""
        for pattern, route in self.routes.get(method, ()):
            found = pattern.match(path)
            if found is not None:
                return route, found.groupdict()
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.routes:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):]
        matched = self.match(scope["method"], path)
        if matched is None:
            await self.app(scope, receive, send)
            return
        route, params = matched
        scope["route"] = route  # MetricsMiddleware labels the answer with route.path
        scope["path_params"] = params
        response: Response = await respond(route, Call(Request(scope, receive), self.plane, params))
        await response(scope, receive, send)
