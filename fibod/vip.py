"""The VIP sync path: the sequence streamed while it is computed.

GET /myapp/vip/fibo?sn=N with an API key answers at once with the same
body a ready fetch gives (0x00, then F(0)..F(sn-1) as text), computed by
the kernel as it is sent: no task, no queue, no sequence store. It runs
in its own gunicorn processes (supervisor program `vip`), so VIP load
never takes a core from the queued path's workers or web apps, and each
process streams at most `vip_max_streams` at once (more get 503).
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterator

import falcon

from fibod.config import GUNICORN_BOOT_ERROR, Settings, startup_settings
from fibod.errors import ForbiddenError, InputError, UnauthorizedError, UnavailableError
from fibod.httputil import TEXT, install_error_handlers
from fibod.kernel import Kernel, get_kernel
from fibod.logs import configure_logging
from fibod.observe import Observed, observed_app
from fibod.params import parse_format, parse_sn, query_params, single
from fibod.protocol import FORMATS, READY, VIP_PATH, set_stream_headers

log = logging.getLogger("fibod.vip")

#: Header that carries the key; `Authorization: Bearer <key>` works too.
API_KEY_HEADER = "X-Api-Key"


def parse_api_keys(text: str) -> tuple[str, ...]:
    """Split the configured comma-separated keys, dropping blanks."""
    return tuple(key.strip() for key in text.split(",") if key.strip())


def presented_key(req: falcon.Request) -> str | None:
    """Return the key the client sent, from either header."""
    key = req.get_header(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = req.get_header("Authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class VipSequenceResource:
    """GET /myapp/vip/fibo?sn=N: authenticate, then stream as computed."""

    def __init__(self, settings: Settings, kernel: Kernel) -> None:
        self._settings = settings
        self._kernel = kernel
        self._keys = [key.encode() for key in parse_api_keys(settings.vip_api_keys)]
        self._slots = threading.BoundedSemaphore(max(1, settings.vip_max_streams))

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Check the key and sn, then stream F(0)..F(sn-1)."""
        self._authenticate(req)
        params = query_params(req.query_string)
        sn = parse_sn(single(params, "sn") or "", self._settings.max_sn)
        fmt = parse_format(single(params, "format", required=False))
        if fmt == "binary":  # computed, never stored: there are no segments to send
            raise InputError("format=binary is not offered on the VIP path (use text or lines)")
        sep = FORMATS[fmt]
        if not self._slots.acquire(blocking=False):
            raise UnavailableError(
                f"all {self._settings.vip_max_streams} VIP streams of this process are busy"
            )
        resp.status = falcon.HTTP_200
        resp.content_type = TEXT
        resp.cache_control = ["no-store"]
        set_stream_headers(resp)
        resp.stream = self._stream(sn, sep)

    def _authenticate(self, req: falcon.Request) -> None:
        if not self._keys:
            raise ForbiddenError("the VIP path is not configured (FIBOD_VIP_API_KEYS is empty)")
        key = presented_key(req)
        if key is None:
            raise UnauthorizedError(f"an API key is required ({API_KEY_HEADER} header)")
        # compare with every key, in constant time, so timing tells nothing
        given = key.encode()
        if not any([hmac.compare_digest(given, known) for known in self._keys]):
            raise UnauthorizedError("the API key is not valid")

    def _stream(self, sn: int, sep: bytes) -> SlotStream:
        """Yield 0x00 and the text block by block; free the slot at the end."""
        blocks = self._kernel.iter_run_text(0, sn, sep, self._settings.write_chunk_bytes)
        return SlotStream(blocks, self._slots)


class SlotStream:
    """A response body that gives its stream slot back when closed.

    WSGI servers call close() even on a body they never iterated (the
    client left first); a generator's `finally` would not run then.
    """

    def __init__(self, blocks: Iterator[memoryview], slots: threading.BoundedSemaphore) -> None:
        self._blocks = blocks
        self._slots = slots
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield READY
        for block in self._blocks:
            yield bytes(block)  # the kernel reuses its buffer for the next block

    def close(self) -> None:
        """Release the slot once."""
        if not self._closed:
            self._closed = True
            self._slots.release()


def _unauthorized(
    _req: falcon.Request, resp: falcon.Response, ex: UnauthorizedError, _params: object
) -> None:
    """Answer 401 with the challenge RFC 9110 asks for."""
    resp.status = falcon.HTTP_401
    resp.content_type = TEXT
    resp.text = f"{ex}\n"
    resp.set_header("WWW-Authenticate", 'Bearer realm="fibod-vip"')


def create_app(settings: Settings, kernel: Kernel | None = None) -> falcon.App:
    """Build the VIP app."""
    app = falcon.App()
    app.add_route(VIP_PATH, VipSequenceResource(settings, kernel or get_kernel()))
    install_error_handlers(app, settings.retry_after_s)
    app.add_error_handler(UnauthorizedError, _unauthorized)
    return app


def get_app() -> Observed:
    """Build the VIP app from the environment (gunicorn); it depends on no store."""
    settings = startup_settings("vip", GUNICORN_BOOT_ERROR)
    configure_logging(settings)
    if not parse_api_keys(settings.vip_api_keys):
        log.warning("FIBOD_VIP_API_KEYS is empty: every VIP request gets 403")
    return observed_app(create_app(settings), "vip", settings, ())
