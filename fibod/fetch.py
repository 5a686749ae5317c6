"""The fetch app: task state and the sequence, streamed from Redis #2.

GET /myapp/fibotask/id=<id> (the original form) and /myapp/fibotask?id=
answer a body whose first byte is the status (docs/API.md): 0x00 then
the numbers, 0x01 not ready yet, 0x02 failed, 0x03 expired. The numbers
are rendered segment by segment while the next segment is read ahead, in
~1 MB writes with Content-Length, so the body is never held whole.
GET /myapp/tasks/<id> answers the task as JSON.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Protocol

import falcon

from fibod import agreement, health, keys, lengths, planner
from fibod.config import GUNICORN_BOOT_ERROR, Settings, SettingsError, startup_settings
from fibod.counters import Tally
from fibod.errors import ExpiredError, InputError, SegmentError, UnavailableError
from fibod.httputil import TEXT, install_error_handlers
from fibod.kernel import Kernel, get_kernel
from fibod.logs import configure_logging
from fibod.memory import release_free_memory
from fibod.observe import Observed, observed_app
from fibod.params import parse_format, parse_wait, query_params, single
from fibod.protocol import (
    EXPIRED,
    FAILED,
    FETCH_ID_PATH,
    FETCH_PATH,
    FORMATS,
    PENDING,
    PROGRESS_HEADER,
    READY,
    STATUS_PATH,
    set_stream_headers,
    task_links,
)
from fibod.redis_client import connect_task_store
from fibod.segments import (
    OVERHEAD_BYTES,
    SegmentHeader,
    SegmentLayout,
    encode_segment,
    payload_of,
    read_header,
    validate_segment,
)
from fibod.tasks import Task, TaskState, parse_task_id

log = logging.getLogger("fibod.fetch")

#: First and longest pause between task checks of a long-poll, seconds.
WAIT_FIRST_STEP_S = 0.005
WAIT_MAX_STEP_S = 0.05
#: Segments read ahead by a pool of this many threads per process.
READAHEAD_THREADS = 16


class TaskReader(Protocol):
    """The part of the task store the fetch app uses."""

    def lookup(self, task_id: str) -> Task: ...


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
        tasks: TaskReader,
        sequences: SegmentReader,
        readahead: ThreadPoolExecutor,
    ) -> None:
        self._settings = settings
        self._tasks = tasks
        self._sequences = sequences
        self._layout = sequences.layout
        self._readahead = readahead

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, task_id: str | None = None
    ) -> None:
        """Answer the task's status byte, and the sequence once ready."""
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
        deadline = time.monotonic() + wait_s
        step = WAIT_FIRST_STEP_S
        resp.cache_control = ["no-store"]
        while True:
            try:
                task = self._tasks.lookup(task_id)
            except ExpiredError as exc:
                self._answer(resp, falcon.HTTP_410, EXPIRED, str(exc))
                return
            if task.state is TaskState.READY:
                self._send_ready(resp, task, fmt)
                return
            if task.state is TaskState.FAILED:
                self._answer(resp, falcon.HTTP_500, FAILED, task.error or "failed")
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._answer_pending(resp, task)
                return
            time.sleep(min(step, remaining))
            step = min(step * 2, WAIT_MAX_STEP_S)

    def _send_ready(self, resp: falcon.Response, task: Task, fmt: str) -> None:
        """Stream a ready task; its length is known without reading a segment."""
        js = planner.task_segments(self._layout, task.sn)
        resp.status = falcon.HTTP_200
        set_stream_headers(resp)
        if fmt == "binary":
            resp.content_type = "application/octet-stream"
            resp.content_length = 1 + sum(
                OVERHEAD_BYTES + lengths.payload_bytes(*self._layout.bounds(j)) for j in js
            )
        else:
            resp.content_type = TEXT
            resp.content_length = 1 + lengths.text_bytes(0, task.sn)
        resp.stream = self._stream(js, task.sn, fmt)

    def _stream(self, js: list[int], sn: int, fmt: str) -> Iterator[bytes]:
        """Yield the status byte and the body, one segment at a time."""
        kernel = get_kernel()
        sep = FORMATS[fmt]
        pending: Future[bytes | None] | None = None
        streamed = Tally(partial(self._note, keys.STAT_BYTES_STREAMED), self._readahead)
        try:
            yield READY
            if js:
                pending = self._readahead.submit(self._read, js[0])
            for i, j in enumerate(js):
                assert pending is not None
                stored = pending.result()
                pending = None
                if i + 1 < len(js):  # read the next one while this one renders
                    pending = self._readahead.submit(self._read, js[i + 1])
                segment, header = self._usable(j, stored, kernel)
                if fmt == "binary":
                    piece = segment
                else:
                    # one fresh buffer per segment (a few MB): handed to the
                    # socket as is, no copy per block
                    wanted = min(header.count, sn - header.start)
                    piece = kernel.payload_text(payload_of(segment, header), wanted, sep)
                yield piece
                streamed.add(len(piece))
        finally:
            if pending is not None:
                pending.cancel()
            streamed.flush()
            release_free_memory()  # a finished stream leaves no peak RSS behind

    def _read(self, j: int) -> bytes | None:
        """Read segment j; a store that cannot answer counts as not having it."""
        try:
            return self._sequences.get(j)
        except UnavailableError as exc:
            log.warning("segment %d unreadable, computing it instead: %s", j, exc)
            return None

    def _usable(self, j: int, stored: bytes | None, kernel: Kernel) -> tuple[bytes, SegmentHeader]:
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
                log.error("segment %d is damaged (%s): deleting and computing it again", j, exc)
                self._note(keys.STAT_SEGMENTS_REPAIRED)
                self._discard(j, stored)
        else:
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
        resp.set_header(PROGRESS_HEADER, f"{task.done}/{task.sn}")
        self._answer(resp, falcon.HTTP_202, PENDING, task.state.value)

    @staticmethod
    def _answer(resp: falcon.Response, status: str, code: bytes, reason: str) -> None:
        resp.status = status
        resp.content_type = TEXT
        resp.data = code + reason.encode()


class TaskStatusResource:
    """GET /myapp/tasks/<id>: the task as JSON."""

    def __init__(self, tasks: TaskReader) -> None:
        self._tasks = tasks

    def on_get(self, _req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Answer id, sn, state, progress and timestamps."""
        task = self._tasks.lookup(parse_task_id(task_id))
        resp.cache_control = ["no-store"]
        resp.media = task.to_json() | task_links(task.id)


def create_app(
    settings: Settings,
    tasks: TaskReader,
    sequences: SegmentReader,
    readahead: ThreadPoolExecutor | None = None,
) -> falcon.App:
    """Build the fetch app from its parts."""
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    pool = readahead or ThreadPoolExecutor(READAHEAD_THREADS, thread_name_prefix="readahead")
    fetch = FetchResource(settings, tasks, sequences, pool)
    app.add_route(FETCH_PATH, fetch)
    app.add_route(FETCH_ID_PATH, fetch)
    app.add_route(STATUS_PATH, TaskStatusResource(tasks))
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
    app = create_app(settings, tasks, sequences)
    return observed_app(app, "fetch", settings, (health.TASK_STORE,))
