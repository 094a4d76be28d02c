"""Optional security layers of the HTTP app: bearer-token API keys, CORS, and offline API docs.

The gRPC server applies the same API keys (``service.grpc.server``: metadata ``authorization:
Bearer <key>``, the health service exempt) and the same TLS certificate.

* **API keys** (``--api-keys FILE``, one key per line, ``#`` comments): every request needs
  ``Authorization: Bearer <key>``, compared in constant time with every key. Health probes
  (``/healthz``, ``/v2/health/live``, ``/v2/health/ready``) never need one, so orchestrators keep
  probing; ``/metrics`` and the docs need one unless ``--public-metrics`` / ``--public-docs``.
  Refusals are 401 JSON with ``WWW-Authenticate: Bearer``.
* **CORS** (``--cors-origins``): Starlette's middleware for the listed origins only; without it
  no CORS header is sent, so browsers keep other origins from reading answers.
* **Docs**: ``/docs`` is Swagger UI served from the ``swagger-ui-bundle`` package (no CDN, works
  offline); ``--no-docs`` removes ``/docs`` and ``/openapi.json``.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.settings import ServeSettings

HEALTH_PATHS = frozenset({"/healthz", "/v2/health/live", "/v2/health/ready"})
DOCS_PATHS = ("/docs", "/openapi.json")  # prefixes: /docs/static/... too
DOCS_STATIC = "/docs/static"


class InvalidApiKeysError(ServiceError):
    """The API keys file cannot be read or holds no key (start-up error, exit code 2)."""

    status_code = 500
    code = "invalid_api_keys"
    exit_code = 2


def read_api_keys(path: Path) -> list[bytes]:
    """The keys of an API keys file: one per line, blank lines and ``#`` comments ignored.

    Raises:
        InvalidApiKeysError: the file cannot be read or holds no key.
    """
    try:
        lines = path.read_text(encoding="utf8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InvalidApiKeysError(f"--api-keys: expected a readable UTF-8 file of keys, received "
                                  f"{str(path)!r}: {getattr(err, 'strerror', None) or err}") from err
    keys = [line.strip().encode() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise InvalidApiKeysError(f"--api-keys: expected at least one key in {str(path)!r}, received none")
    return keys


def key_authorized(header: bytes | None, keys: list[bytes]) -> bool:
    """Whether an ``Authorization`` value (HTTP header or gRPC metadata) is ``Bearer <a known
    key>``; every key is compared, in constant time."""
    scheme, _, token = (header or b"").partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        return False
    matches = [hmac.compare_digest(token.strip(), key) for key in keys]  # no early exit
    return any(matches)


def refusal_message(header: bytes | None) -> str:
    """Why a request without a valid key is refused (HTTP 401 and gRPC UNAUTHENTICATED alike)."""
    if header is None:
        return "the request has no Authorization header, expected 'Authorization: Bearer <key>'"
    return "the Authorization header holds no valid API key"


class BearerAuth:
    """Refuses requests without a valid ``Authorization: Bearer <key>`` (pure ASGI).

    Args:
        app: the application behind.
        keys: the accepted keys.
        public_metrics: ``/metrics`` needs no key.
        public_docs: ``/docs`` and ``/openapi.json`` need no key.
    """

    def __init__(self, app: ASGIApp, keys: list[bytes], public_metrics: bool = False,
                 public_docs: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.public_metrics = public_metrics
        self.public_docs = public_docs

    def is_public(self, path: str) -> bool:
        if path in HEALTH_PATHS or (self.public_metrics and path == "/metrics"):
            return True
        return self.public_docs and path.startswith(DOCS_PATHS)

    def authorized(self, header: bytes | None) -> bool:
        """Whether the header carries a known key (:func:`key_authorized`)."""
        return key_authorized(header, self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self.is_public(scope["path"]):
            await self.app(scope, receive, send)  # OPTIONS: CORS preflights carry no credentials
            return
        header = dict(scope["headers"]).get(b"authorization")
        if self.authorized(header):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": refusal_message(header), "code": "unauthorized"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="lc2d-serve"')]})
        await send({"type": "http.response.body", "body": body})


def add_security(app: FastAPI, settings: ServeSettings) -> None:
    """Adds docs, CORS and API keys as the settings ask (call after the other middlewares)."""
    if settings.docs:
        add_offline_docs(app)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["*"],
                           expose_headers=["X-Request-ID", "X-Model-Name", "X-Model-Version",
                                           "Inference-Header-Content-Length"])
    if settings.api_keys is not None:  # outermost: nothing runs for a refused request
        app.add_middleware(BearerAuth, keys=read_api_keys(settings.api_keys),
                           public_metrics=settings.public_metrics, public_docs=settings.public_docs)


def add_offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package's files, not from a CDN."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_STATIC, StaticFiles(directory=swagger_ui_path), name="swagger-ui")

    async def swagger_ui(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json",
                                   title=f"{app.title} - docs",
                                   swagger_js_url=f"{DOCS_STATIC}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_STATIC}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_STATIC}/favicon-32x32.png")

    app.add_route("/docs", swagger_ui, include_in_schema=False)
