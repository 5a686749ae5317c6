"""What every fibod process answers for operators, and its request measurements.

`Observed` wraps a WSGI app (or stands alone, for a worker's port):
GET /metrics, /healthz and /readyz are answered here, every other
request is passed on and measured (count, duration to the last byte,
body bytes, in flight) and runs with nginx's X-Request-ID in the log
context. Wrapping at the WSGI level, not as Falcon middleware, is what
lets a stream be measured until it really ends (close()).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from fibod import health, logs, metrics
from fibod.config import Settings
from fibod.httputil import TEXT
from fibod.protocol import (
    FETCH_PATH,
    MONITOR_PREFIX,
    OPENAPI_PATH,
    STATUS_PREFIX,
    SUBMIT_PATH,
    VIP_PATH,
)

log = logging.getLogger("fibod.observe")

#: Operator routes every process answers on its own port.
METRICS_PATH, HEALTHZ_PATH, READYZ_PATH = "/metrics", "/healthz", "/readyz"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
#: Returns the reasons this process is not ready (empty: ready).
Readiness = Callable[[], list[str]]


def route_name(path: str) -> str:
    """Name the route of a path with a bounded set of labels (never the raw path)."""
    if path == SUBMIT_PATH:
        return "submit"
    if path == FETCH_PATH or path.startswith(FETCH_PATH + "/"):
        return "fetch"
    if path.startswith(STATUS_PREFIX):
        return "status"
    if path == VIP_PATH:
        return "vip"
    if path == OPENAPI_PATH:
        return "openapi"
    if path.startswith(MONITOR_PREFIX):
        return "monitor"
    return "other"


class Observed:
    """A WSGI app with /metrics, /healthz, /readyz, its requests measured."""

    def __init__(
        self,
        app: WsgiApp | None,
        name: str,
        readiness: Readiness = list,
        exposition: Callable[[str], bytes] = lambda _query: metrics.exposition(),
    ) -> None:
        self._app = app
        self.name = name
        self._readiness = readiness
        self._exposition = exposition

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Answer an operator route, or pass the request on and measure it."""
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            body = self._exposition(environ.get("QUERY_STRING", ""))
            return _answer(start_response, "200 OK", body, metrics.CONTENT_TYPE)
        if path == HEALTHZ_PATH:
            return _answer(start_response, "200 OK", f"ok: {self.name} is alive\n".encode())
        if path == READYZ_PATH:
            reasons = self._readiness()
            if reasons:
                text = f"not ready: {'; '.join(reasons)}\n"
                return _answer(start_response, "503 Service Unavailable", text.encode())
            return _answer(start_response, "200 OK", f"ready: {self.name}\n".encode())
        if self._app is None:
            return _answer(start_response, "404 Not Found", b"no such route: see /metrics\n")
        return self._measured(self._app, environ, start_response, route_name(path))

    def _measured(
        self, app: WsgiApp, environ: dict[str, Any], start_response: Callable[..., Any], route: str
    ) -> Iterable[bytes]:
        started = time.perf_counter()
        code: list[str] = []

        def remember_status(status: str, headers: Any, exc_info: Any = None) -> Any:
            code[:] = [status[:3]]
            return start_response(status, headers, exc_info)

        # the same thread runs the request and sends its body (gthread), so
        # every line logged for it, streaming included, carries the id
        logs.request_id.set(environ.get("HTTP_X_REQUEST_ID"))
        in_flight = metrics.HTTP_IN_FLIGHT.labels(self.name)
        in_flight.inc()

        def finished(sent: int) -> None:
            in_flight.dec()
            status = code[0] if code else "500"
            metrics.HTTP_REQUESTS.labels(self.name, route, status).inc()
            metrics.HTTP_DURATION.labels(self.name, route).observe(time.perf_counter() - started)
            metrics.HTTP_BYTES.labels(self.name, route).inc(sent)
            logs.request_id.set(None)

        try:
            body = app(environ, remember_status)
        except BaseException:
            code[:] = ["500"]
            finished(0)
            raise
        return CountedBody(body, finished)


class CountedBody:
    """A response body that counts the bytes sent and reports them once, on close.

    WSGI servers call close() whether the body was sent whole or the
    client left first; the inner body's close() (a VIP stream slot, a
    fetch's read-ahead) runs as before.
    """

    def __init__(self, body: Iterable[bytes], finished: Callable[[int], None]) -> None:
        self._body = body
        self._finished: Callable[[int], None] | None = finished
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        """Close the inner body, then report once."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if self._finished is not None:
                finished, self._finished = self._finished, None
                finished(self._sent)


def _answer(
    start_response: Callable[..., Any], status: str, body: bytes, content_type: str = TEXT
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ],
    )
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """wsgiref's handler without a stderr line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: scrapes come every few seconds."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def serve(app: WsgiApp, host: str, port: int) -> WSGIServer | None:
    """Serve app on host:port from a daemon thread; None (and a warning) if the port is taken.

    For processes that are no web app (workers): their operator routes
    must never stop them from working.
    """
    try:
        server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        log.warning("not serving /metrics, /healthz, /readyz on %s:%d: %s", host, port, exc)
        return None
    threading.Thread(target=server.serve_forever, name="ops-http", daemon=True).start()
    log.info("serving /metrics, /healthz, /readyz on http://%s:%d", host, port)
    return server


def observed_app(app: WsgiApp, name: str, settings: Settings, parts: tuple[str, ...]) -> Observed:
    """Wrap an app so its own port answers the operator routes; ready when `parts` answer."""
    checks = health.stack_checks(settings, parts)
    return Observed(app, name, lambda: health.failures(checks))
