"""Operations routes: Prometheus metrics, liveness for load balancers, ``GET /`` to the docs."""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import RedirectResponse

from service.api.bodies import json_response
from service.api.routing import Call
from service.metrics import CONTENT_TYPE


async def prometheus_metrics(call: Call) -> Response:
    """Requests, errors, latency, batch sizes, queue depth and inferences, in Prometheus' text format."""
    return Response(call.plane.metrics.render(), media_type=CONTENT_TYPE)


async def healthz(call: Call) -> Response:
    """Liveness for load balancers (same as ``/v2/health/live``)."""
    return json_response({"live": True})


async def docs_redirect(call: Call) -> Response:
    """Sends a browser opening the server's address to the interactive API docs."""
    return RedirectResponse(call.request.scope.get("root_path", "") + "/docs", status_code=307)
