"""The fetch app: task state and the sequence, streamed from Redis #2.

GET /myapp/fibotask/id=<id> (the original form) and /myapp/fibotask?id=
answer a body whose first byte is the status (docs/API.md): 0x00 then
the numbers, 0x01 not ready yet, 0x02 failed, 0x03 expired, 0x04
cancelled. The numbers are rendered segment by segment while the next
segment is read ahead, with Content-Length, so the body is never held
whole. A ready body has a strong ETag and serves HEAD, If-None-Match and
single byte ranges (fibod/ranges.py), each range mapped to the segments,
numbers and digits it covers (fibod/offsets.py). A body asked for again
and not yet in the text cache (fibod/textcache.py) is written there in
the background, at the store's pace, not the client's; once there, a GET
is answered with X-Accel-Redirect and nginx sends the file. A long-poll on
a running task gets its body at once, each segment as the workers store
it (fibod/early.py). The task routes (/myapp/tasks...) are fibod/taskapi.py's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Protocol

import falcon

from fibod import agreement, health, keys, lengths
from fibod.config import GUNICORN_BOOT_ERROR, Settings, SettingsError, startup_settings
from fibod.counters import Tally
from fibod.early import SegmentWait, StreamAbandoned
from fibod.errors import ExpiredError, InputError, SegmentError, UnavailableError
from fibod.httputil import TEXT, install_error_handlers
from fibod.ids import parse_task_id
from fibod.kernel import Kernel, get_kernel
from fibod.logs import configure_logging
from fibod.memory import release_free_memory
from fibod.observe import CountedBody, Observed, observed_app
from fibod.offsets import STATUS_BYTES, Piece, ResultBody, text_parts
from fibod.params import parse_format, parse_wait, query_params, single
from fibod.protocol import (
    CANCELLED,
    EXPIRED,
    FAILED,
    FETCH_ID_PATH,
    FETCH_PATH,
    FORMATS,
    PENDING,
    READY,
    progress_header,
    set_stream_headers,
)
from fibod.ranges import (
    ByteRange,
    http_date,
    if_range_allows,
    nginx_parses_alike,
    none_match,
    parse_range,
    result_etag,
)
from fibod.redis_client import connect_task_store
from fibod.segments import (
    SegmentHeader,
    SegmentLayout,
    encode_segment,
    payload_of,
    read_header,
    validate_segment,
)
from fibod.taskapi import TaskAccess, add_task_routes
from fibod.taskmodel import Task, TaskState
from fibod.textcache import TextCache, accel_uri, file_name

log = logging.getLogger("fibod.fetch")

#: First and longest pause between task checks of a long-poll, seconds.
WAIT_FIRST_STEP_S = 0.005
WAIT_MAX_STEP_S = 0.025
#: Set on an answer that did not wait because every long-poll slot was taken.
WAIT_REFUSED_HEADER = "X-Fibod-Wait"
#: Segments read ahead by a pool of this many threads per process.
READAHEAD_THREADS = 16
#: Least seconds an early stream waits for the workers before it computes
#: what is missing itself (else the client's `wait`).
EARLY_MIN_PATIENCE_S = 1.0
#: Request headers that make a long-poll on a running task wait for ready.
EARLY_EXCLUDED = ("Range", "If-Range", "If-None-Match", "If-Match", "If-Unmodified-Since")
#: Request headers nginx would judge against the file, not as the app does:
#: such a GET is streamed by the app, never redirected to the cache.
UNCACHED_CONDITIONS = ("If-Match", "If-Unmodified-Since")


class SegmentReader(Protocol):
    """The part of the sequence store the fetch app uses."""

    layout: SegmentLayout

    def get(self, j: int) -> bytes | None: ...

    def discard(self, j: int, segment: bytes) -> bool: ...

    def count(self, **deltas: int) -> None: ...


class FetchResource:
    """GET /myapp/fibotask?id=<id> and /myapp/fibotask/id=<id>."""

    def __init__(
        self,
        settings: Settings,
        tasks: TaskAccess,
        sequences: SegmentReader,
        readahead: ThreadPoolExecutor,
        cache: TextCache | None = None,
    ) -> None:
        self._settings = settings
        self._cache = cache
        self._tasks = tasks
        self._sequences = sequences
        self._layout = sequences.layout
        self._readahead = readahead
        # long-polls sleep on request threads: at most this many at once, so
        # the others stay free for streams and quick answers
        self._waiting = threading.BoundedSemaphore(settings.fetch_max_waiting)

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, task_id: str | None = None
    ) -> None:
        """Answer the task's status byte, and the sequence (or a range of it) once ready."""
        self._answer(req, resp, task_id, send_body=True)

    def on_head(
        self, req: falcon.Request, resp: falcon.Response, task_id: str | None = None
    ) -> None:
        """Answer the headers a GET would have (a long-poll too), without a body.

        A long-poll HEAD on a running task waits for ready, where the GET
        would start the body early (fibod/early.py).
        """
        self._answer(req, resp, task_id, send_body=False)

    def _answer(
        self, req: falcon.Request, resp: falcon.Response, task_id: str | None, send_body: bool
    ) -> None:
        query = req.query_string
        if task_id is not None:
            # Falcon matches the "id={task_id}" segment with a `$` regex, which
            # also matches before a trailing newline and drops it: read the id
            # from the path itself, so "<id>%0A" is refused like any bad id.
            task_id = req.path.rsplit("/", 1)[-1].removeprefix("id=")
        if task_id is not None and "&" in task_id:
            # the original path form takes options the same way:
            # /myapp/fibotask/id=<id>&wait=10 is /myapp/fibotask?id=<id>&wait=10
            task_id, extra = task_id.split("&", 1)
            query = f"{extra}&{query}" if query else extra
        params = query_params(query)
        if task_id is not None and "id" in params:
            raise InputError("parameter id given twice; give it once")
        if task_id is None:
            task_id = single(params, "id") or ""
        task_id = parse_task_id(task_id)
        fmt = parse_format(single(params, "format", required=False))
        wait_s = parse_wait(single(params, "wait", required=False), self._settings.fetch_max_wait_s)
        resp.cache_control = ["no-store"]
        if wait_s <= 0:
            self._poll(req, resp, task_id, fmt, send_body, 0)
        elif self._waiting.acquire(blocking=False):
            try:
                self._poll(req, resp, task_id, fmt, send_body, wait_s)
            finally:
                self._waiting.release()
        else:
            # every long-poll slot of this process is taken: answer now, as
            # without wait (the client polls again), and say so
            resp.set_header(WAIT_REFUSED_HEADER, "busy")
            self._poll(req, resp, task_id, fmt, send_body, 0)

    def _poll(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        task_id: str,
        fmt: str,
        send_body: bool,
        wait_s: float,
    ) -> None:
        """Answer the task's state, looking again until it is final or wait_s has passed."""
        deadline = time.monotonic() + wait_s
        step = WAIT_FIRST_STEP_S
        while True:
            try:
                task = self._tasks.lookup(task_id)
            except ExpiredError as exc:
                self._status(resp, falcon.HTTP_410, EXPIRED, str(exc))
                return
            if task.state is TaskState.READY:
                self._send_ready(req, resp, task, fmt, send_body)
                return
            if (
                task.state is TaskState.RUNNING
                and self._starts_early(req, send_body, wait_s)
                and self._send_early(resp, task, fmt, max(wait_s, EARLY_MIN_PATIENCE_S))
            ):
                return
            if task.state is TaskState.FAILED:
                self._status(resp, falcon.HTTP_500, FAILED, task.error or "failed")
                return
            if task.state is TaskState.CANCELLED:
                self._status(resp, falcon.HTTP_410, CANCELLED, f"task {task.id} was cancelled")
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._answer_pending(resp, task)
                return
            time.sleep(min(step, remaining))
            step = min(step * 2, WAIT_MAX_STEP_S)

    def _send_ready(
        self, req: falcon.Request, resp: falcon.Response, task: Task, fmt: str, send_body: bool
    ) -> None:
        """Answer a ready task: whole, a range, or 304; lengths known from the indices."""
        body = ResultBody(self._layout, task.start, task.sn, fmt)
        etag = result_etag(fmt, task.start, task.sn, self._layout.segment_bytes)
        self._validators(resp, task, etag)
        if none_match(req.get_header("If-None-Match"), etag):
            resp.status = falcon.HTTP_304  # no body, so no Content-Type either
            return
        set_stream_headers(resp)
        resp.content_type = "application/octet-stream" if fmt == "binary" else TEXT
        wanted = None
        if send_body and if_range_allows(req.get_header("If-Range"), etag, task.finished):
            wanted = parse_range(req.get_header("Range"), body.length)  # 416 past the end
        if send_body and self._cache is not None:
            name = file_name(etag)
            if not self._cache.has(name, body.length):
                self._fill_later(name, body, task)
            elif self._redirectable(req, wanted):
                resp.status = falcon.HTTP_200
                resp.set_header("X-Accel-Redirect", accel_uri(name, ranged=wanted is not None))
                resp.content_length = 0
                return
        first, last = 0, body.length - 1
        if wanted is None:
            resp.status = falcon.HTTP_200
        else:
            resp.status = falcon.HTTP_206
            resp.set_header("Content-Range", wanted.content_range(body.length))
            first, last = wanted.first, wanted.last
        resp.content_length = last - first + 1
        if send_body:
            resp.stream = self._stream(body, first, last)

    def _starts_early(self, req: falcon.Request, send_body: bool, wait_s: float) -> bool:
        """Tell whether a long-poll on a running task gets its body at once (fibod/early.py).

        Only a whole-body GET: a range, a HEAD or a conditional request
        waits for ready, as does every request if the setting is off.
        """
        if not (self._settings.fetch_early_start and send_body and wait_s > 0):
            return False
        return not any(req.get_header(h) for h in EARLY_EXCLUDED)

    def _send_early(self, resp: falcon.Response, task: Task, fmt: str, patience_s: float) -> bool:
        """Answer a running task's whole body now, each segment sent once stored.

        The bytes are those a ready answer has, so the ETag is the same;
        no Last-Modified (the task has not finished), and not cached. The
        stream takes a long-poll slot of its own (it may wait on the
        workers), given back when the server closes the body, sent or not;
        with none free, False: the request waits for ready instead.
        """
        body = ResultBody(self._layout, task.start, task.sn, fmt)
        etag = result_etag(fmt, task.start, task.sn, self._layout.segment_bytes)
        if not self._waiting.acquire(blocking=False):
            return False
        resp.etag = etag
        resp.accept_ranges = "bytes"
        set_stream_headers(resp)
        resp.set_header("X-Fibod-State", TaskState.RUNNING.value)
        resp.content_type = "application/octet-stream" if fmt == "binary" else TEXT
        resp.status = falcon.HTTP_200
        resp.content_length = body.length
        task_id = task.id
        waiter = SegmentWait(self._read, lambda: self._tasks.lookup(task_id).state, patience_s)
        stream = self._stream(body, 0, body.length - 1, waiter)
        # a generator's own `finally` does not run if it never started (a
        # client gone before the first byte): the slot is given back on close
        resp.stream = CountedBody(stream, lambda _sent: self._waiting.release())
        return True

    @staticmethod
    def _redirectable(req: falcon.Request, wanted: ByteRange | None) -> bool:
        """Tell whether nginx would answer this GET from the file as the app does.

        nginx applies a Range itself, so a range is handed over only in a
        form nginx reads as the app did.
        """
        if any(req.get_header(h) for h in UNCACHED_CONDITIONS):
            return False
        return wanted is None or nginx_parses_alike(req.get_header("Range") or "")

    def _fill_later(self, name: str, body: ResultBody, task: Task) -> None:
        """Have the body written to the text cache, in the background."""
        assert self._cache is not None
        finished = task.finished if task.finished is not None else self._tasks.now()

        def produce() -> Iterator[bytes]:
            yield READY
            yield from self._bytes(body, 0, body.length - 1, repair=False)

        self._cache.fill_later(name, body.length, finished // 1000, produce)

    def _validators(self, resp: falcon.Response, task: Task, etag: str) -> None:
        """Let clients and caches keep a ready body as long as the task lives."""
        resp.etag = etag
        resp.accept_ranges = "bytes"
        finished = task.finished if task.finished is not None else self._tasks.now()
        left_s = max(finished // 1000 + self._tasks.ttl_s - self._tasks.now() // 1000, 0)
        resp.cache_control = ["public", f"max-age={left_s}"]
        resp.set_header("Last-Modified", http_date(finished))

    def _stream(
        self, body: ResultBody, first: int, last: int, early: SegmentWait | None = None
    ) -> Iterator[bytes]:
        """Yield body bytes first..last to a client; count the sequence's bytes."""
        streamed = Tally(partial(self._note, keys.STAT_BYTES_STREAMED), self._readahead)
        try:
            if first < STATUS_BYTES:
                yield READY
            for sent in self._bytes(body, first, last, early=early):
                yield sent
                streamed.add(len(sent))
        except StreamAbandoned as exc:
            # the client gets fewer bytes than Content-Length: gunicorn
            # closes the connection, and asking again says why
            log.warning("stream of a running task stopped: %s", exc)
            raise
        finally:
            streamed.flush()
            release_free_memory()  # a finished stream leaves no peak RSS behind

    def _bytes(
        self,
        body: ResultBody,
        first: int,
        last: int,
        repair: bool = True,
        early: SegmentWait | None = None,
    ) -> Iterator[bytes]:
        """Yield the sequence's bytes in first..last (no status byte), reading ahead.

        Without repair (a cache fill) a missing or damaged segment is
        computed all the same, but neither deleted nor counted: that is
        left to the streams, whose counters tell what clients cost. With
        `early` (a running task) a missing segment is waited for first.
        """
        kernel = get_kernel()
        pieces = list(body.pieces(first, last))
        pending: Future[bytes | None] | None = None
        try:
            if pieces:
                pending = self._readahead.submit(self._read, pieces[0].j)
            for i, piece in enumerate(pieces):
                assert pending is not None
                stored = pending.result()
                pending = None
                if stored is None and early is not None:
                    stored = early.until_stored(piece.j)
                if i + 1 < len(pieces):  # read the next one while this one renders
                    pending = self._readahead.submit(self._read, pieces[i + 1].j)
                segment, header = self._usable(piece.j, stored, kernel, repair)
                yield from self._render(piece, segment, header, body.fmt, kernel)
        finally:
            if pending is not None:
                pending.cancel()

    @staticmethod
    def _render(
        piece: Piece, segment: bytes, header: SegmentHeader, fmt: str, kernel: Kernel
    ) -> Iterator[bytes]:
        """Yield a piece's bytes from a checked segment, rendering only its numbers.

        Text comes in parts of at most RENDER_PART_BYTES, each a fresh
        buffer handed to the socket as is (offsets.text_parts says why).
        """
        if fmt == "binary":
            whole = piece.skip == 0 and piece.size == len(segment)
            yield segment if whole else segment[piece.skip : piece.skip + piece.size]
            return
        payload = payload_of(segment, header)
        # the payload offset of F(first) is known from the lengths: no
        # number before it is decoded or rendered
        offset = lengths.payload_bytes(header.start, piece.first - header.start)
        if int.from_bytes(payload[offset : offset + 4], "little") != lengths.digits(piece.first):
            raise SegmentError(f"F({piece.first}) is not where its length says")
        sep = FORMATS[fmt]
        skip, left = piece.skip, piece.size
        for first, count in text_parts(piece.first, piece.count, len(sep)):
            text = kernel.payload_text(payload[offset:], count, sep)
            offset += lengths.payload_bytes(first, count)
            if skip or len(text) > left:
                text = text[skip : skip + left]
                skip = 0
            left -= len(text)
            yield text
        if left:
            sent = piece.size - left
            raise SegmentError(f"F({piece.first}).. gave {sent} bytes, {piece.size} expected")

    def _read(self, j: int) -> bytes | None:
        """Read segment j; a store that cannot answer counts as not having it."""
        try:
            return self._sequences.get(j)
        except UnavailableError as exc:
            log.warning("segment %d unreadable, computing it instead: %s", j, exc)
            return None

    def _usable(
        self, j: int, stored: bytes | None, kernel: Kernel, repair: bool = True
    ) -> tuple[bytes, SegmentHeader]:
        """Return segment j checked, or computed again where it is gone or damaged.

        The kernel renders a segment faster than Redis sends one, so a
        segment evicted, flushed, lost in a failover or vanished since the
        task was marked ready costs a few ms here, never a failed answer.
        A damaged one is deleted (if still the same bytes) and counted.
        """
        start, count = self._layout.bounds(j)
        if stored is not None:
            try:
                header = validate_segment(stored, kernel)
                if (header.start, header.count) != (start, count):
                    raise SegmentError(f"holds F({header.start})+{header.count}")
                return stored, header
            except SegmentError as exc:
                if repair:
                    log.error("segment %d is damaged (%s): deleting and computing it again", j, exc)
                    self._note(keys.STAT_SEGMENTS_REPAIRED)
                    self._discard(j, stored)
        elif repair:
            self._note(keys.STAT_SEGMENTS_REGENERATED)
        segment = encode_segment(start, count, kernel)
        return segment, read_header(segment)

    def _note(self, counter: str, amount: int = 1) -> None:
        with contextlib.suppress(UnavailableError):  # a counter is not worth a failed stream
            self._sequences.count(**{counter: amount})

    def _discard(self, j: int, segment: bytes) -> None:
        try:
            self._sequences.discard(j, segment)
        except UnavailableError as exc:
            log.warning("could not delete damaged segment %d: %s", j, exc)

    def _answer_pending(self, resp: falcon.Response, task: Task) -> None:
        resp.retry_after = self._settings.retry_after_s
        progress_header(resp, task, self._tasks.now())
        self._status(resp, falcon.HTTP_202, PENDING, task.state.value)

    @staticmethod
    def _status(resp: falcon.Response, status: str, code: bytes, reason: str) -> None:
        resp.status = status
        resp.content_type = TEXT
        resp.data = code + reason.encode()


def create_app(
    settings: Settings,
    tasks: TaskAccess,
    sequences: SegmentReader,
    readahead: ThreadPoolExecutor | None = None,
    cache: TextCache | None = None,
) -> falcon.App:
    """Build the fetch app from its parts (no cache: every body is streamed)."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    pool = readahead or ThreadPoolExecutor(READAHEAD_THREADS, thread_name_prefix="readahead")
    fetch = FetchResource(settings, tasks, sequences, pool, cache)
    app.add_route(FETCH_PATH, fetch)
    app.add_route(FETCH_ID_PATH, fetch)
    add_task_routes(app, tasks)
    install_error_handlers(app, settings.retry_after_s)
    return app


def get_app() -> Observed:
    """Build the fetch app on the real stores and Kafka (gunicorn).

    Ready when the task store answers: without the sequence store a fetch
    still streams, computing what it cannot read.
    """
    from fibod.sequences import SequenceStore
    from fibod.tasks import TaskStore

    settings = startup_settings("fetch", GUNICORN_BOOT_ERROR)
    configure_logging(settings)
    try:
        agreement.check_layout(connect_task_store(settings), settings)
    except (SettingsError, UnavailableError) as exc:
        print(f"fibod fetch: {exc}", file=sys.stderr)
        raise SystemExit(GUNICORN_BOOT_ERROR) from None
    tasks = TaskStore.from_settings(settings)
    sequences = SequenceStore.from_settings(settings)
    cache = None
    if settings.text_cache_bytes and settings.text_cache_accel:
        cache = TextCache(settings.text_cache_dir, settings.text_cache_bytes)
    app = create_app(settings, tasks, sequences, cache=cache)
    return observed_app(app, "fetch", settings, (health.TASK_STORE,))
