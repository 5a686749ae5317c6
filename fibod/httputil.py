"""What both web apps share: error answers and content negotiation."""

from __future__ import annotations

import logging
from typing import Any

import falcon
import redis

from fibod.errors import FibodError, RangeNotSatisfiableError, UnavailableError

log = logging.getLogger("fibod.http")

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


def wants_json(req: falcon.Request) -> bool:
    """Tell whether the client asked for JSON (Accept: application/json)."""
    if not req.accept or "json" not in req.accept:
        return False
    return req.client_prefers([JSON, "text/plain"]) == JSON


def install_error_handlers(app: falcon.App, retry_after_s: int) -> None:
    """Answer fibod errors with their status and a one-line plain reason."""

    def fibod_error(req: falcon.Request, resp: falcon.Response, ex: Any, _params: Any) -> None:
        resp.status = falcon.code_to_http_status(ex.http_status)
        resp.content_type = TEXT
        resp.text = f"{ex}\n"
        resp.cache_control = ["no-store"]
        if isinstance(ex, RangeNotSatisfiableError):
            resp.set_header("Content-Range", f"bytes */{ex.length}")
        if isinstance(ex, UnavailableError):
            resp.retry_after = retry_after_s
            log.warning("%s %s -> 503: %s", req.method, req.relative_uri, ex)

    def redis_error(req: falcon.Request, resp: falcon.Response, ex: Any, params: Any) -> None:
        # a Redis call outside the stores' translation must still be a 503
        fibod_error(req, resp, UnavailableError(f"store unavailable: {ex}"), params)

    app.add_error_handler(FibodError, fibod_error)
    app.add_error_handler(redis.RedisError, redis_error)
    app.set_error_serializer(plain_error)


def plain_error(_req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    """Give Falcon's own errors (404 route, 405 method) the shape of every other error.

    One line of text/plain saying why, as the apps' and nginx's errors are
    (docs/API.md); headers Falcon sets (Allow on a 405) stay.
    """
    reason = ex.title.lower() if ex.title else str(ex.status)
    if ex.description:
        reason = f"{reason}: {ex.description}"
    resp.content_type = TEXT
    resp.text = f"{reason}\n"
