"""Connection-level limits of the HTTP server: read timeouts, a connection cap, draining on SIGTERM.

uvicorn's HTTP protocol (httptools) gives a keep-alive idle timeout and a graceful shutdown
timeout, but nothing bounds how long a client may take to send its headers or its body, its
concurrency limit answers only once a request's headers have arrived (an idle connection still
holds a file descriptor), and on shutdown it closes idle keep-alive connections at once, so a
request a client sends at that moment meets a reset. :func:`guarded_protocol` returns a
subclass of uvicorn's protocol that adds:

* **read timeouts**: headers must arrive within ``header_timeout_s`` of the request's first
  byte (or of the connection), and the body within ``body_timeout_s`` of the headers; past
  them the client gets 408 and the connection is closed (``Connection: close``);
* **a connection cap**: beyond ``max_connections`` open connections (never more than the file
  limit allows), the oldest connection that is idle or still sending headers is closed with a
  503 to make room; when every connection is busy, the new one gets 503 and is closed. Slow or
  idle clients therefore cannot exhaust file descriptors and lock normal clients out;
* **draining**: after SIGTERM, an idle keep-alive connection stays open for
  :data:`DRAIN_WINDOW_S` and any request on it gets 503 with ``Connection: close`` (not a
  reset); answers in flight carry ``Connection: close``;
* **JSON errors**: what the HTTP parser refuses (400) is answered as JSON like every other error.

Every answer here is written by the protocol itself, so none of them costs the application any
work.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("lc2d.service")
DRAIN_WINDOW_S = 2.0
"""After SIGTERM, how long an idle keep-alive connection keeps answering 503 before it closes."""
FILE_RESERVE = 64
"""File descriptors kept for everything but connections (models, logs, the listener)."""
TIMED_OUT = "lc2d.read_timed_out"
"""Scope key set when the body timeout closed the request (``read_body`` then answers 408)."""


@dataclass(frozen=True)
class ConnectionLimits:
    """The limits :func:`guarded_protocol` enforces (from :class:`~service.settings.ServeSettings`)."""

    header_timeout_s: float
    body_timeout_s: float
    max_connections: int

    def effective_max_connections(self) -> int:
        """``max_connections``, lowered to what the process's file limit leaves for connections."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - FILE_RESERVE))


def error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 JSON error answer that closes the connection."""
    body = json.dumps({"error": message, "code": code}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
    return head + body


async def _draining_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every request of a draining connection with 503 (the model is not touched)."""
    body = json.dumps({"error": "the server is shutting down; retry on another instance",
                       "code": "shutting_down"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                            (b"retry-after", b"1"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def guarded_protocol(limits: ConnectionLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the limits of this module (pass it as ``http=``)."""
    cap = limits.effective_max_connections()

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """One client connection (see the module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.phase = "idle"  # idle -> headers -> body -> app -> idle (keep-alive) ...
            self.phase_since = time.monotonic()
            self.read_timer: asyncio.TimerHandle | None = None
            self.draining = False

        # --- phases and timers ---------------------------------------------------------------

        def _enter(self, phase: str, timeout_s: float | None) -> None:
            self.phase, self.phase_since = phase, time.monotonic()
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None
            if timeout_s is not None:
                self.read_timer = self.loop.call_later(timeout_s, self._read_timed_out)

        def _read_timed_out(self) -> None:
            self.read_timer = None
            if self.transport.is_closing():
                return
            what = "headers" if self.phase in ("idle", "headers") else "body"
            limit = limits.header_timeout_s if what == "headers" else limits.body_timeout_s
            logger.info("closing a connection from %s: its request %s did not arrive within %g s",
                        self.client, what, limit)
            if self.phase == "body" and self.cycle is not None:
                self.cycle.scope[TIMED_OUT] = True  # type: ignore[literal-required]
                if self.cycle.response_started:
                    self.transport.close()
                    return
                self.cycle.response_complete = True  # the app's late answer is dropped
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self._close_with(408, "Request Timeout", "request_timeout",
                             f"the request {what} did not arrive within {limit:g} s")

        def _close_with(self, status: int, reason: str, code: str, message: str) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None
            if not self.transport.is_closing():
                self.transport.write(error_bytes(status, reason, code, message))
                self.transport.close()

        # --- uvicorn's hooks -----------------------------------------------------------------

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._enter("idle", limits.header_timeout_s)
            if len(self.connections) > cap and not self._evict_one():
                logger.warning("refusing a connection from %s: %d connections are open (limit %d)",
                               self.client, len(self.connections) - 1, cap)
                self._close_with(503, "Service Unavailable", "too_many_connections",
                                 f"the server has {cap} open connections, its limit; retry later")

        def _evict_one(self) -> bool:
            """Closes the oldest connection that is idle or still sending headers, if any."""
            waiting = [c for c in self.connections if isinstance(c, GuardedHttpToolsProtocol) and
                       c is not self and c.phase in ("idle", "headers") and not c.transport.is_closing()]
            if not waiting:
                return False
            oldest = min(waiting, key=lambda c: c.phase_since)
            oldest._close_with(503, "Service Unavailable", "too_many_connections",
                               "the server closed this idle connection to make room for another")
            return True

        def connection_lost(self, exc: Exception | None) -> None:
            if self.read_timer is not None:
                self.read_timer.cancel()
                self.read_timer = None
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._close_with(400, "Bad Request", "invalid_http",
                             "the request is not valid HTTP/1.1 (request line or headers)")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self.phase == "idle" and self.read_timer is None:
                self._enter("headers", limits.header_timeout_s)
            else:
                self.phase = "headers"

        def on_headers_complete(self) -> None:
            if self.draining:
                self.app = _draining_app
            super().on_headers_complete()
            if self.draining and self.cycle is not None:
                self.cycle.keep_alive = False
            self._enter("body", limits.body_timeout_s)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._enter("app", None)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._enter("idle", None)  # uvicorn's keep-alive timeout runs until the next byte

        def data_received(self, data: bytes) -> None:
            if self.phase == "idle" and self.read_timer is None:
                self._enter("headers", limits.header_timeout_s)
            super().data_received(data)

        def shutdown(self) -> None:
            """SIGTERM: answers in flight close the connection; idle ones answer 503 for a while."""
            self.draining = True
            if self.cycle is None or self.cycle.response_complete:
                self._unset_keepalive_if_required()
                self.loop.call_later(DRAIN_WINDOW_S, self._close_if_idle)
            else:
                self.cycle.keep_alive = False

        def _close_if_idle(self) -> None:
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()
            elif not self.transport.is_closing():
                self.loop.call_later(0.1, self._close_if_idle)

    return GuardedHttpToolsProtocol
