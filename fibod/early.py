"""Waiting for a running task's segments, for a body sent before the task is ready.

A long-poll on a running task need not wait for the last segment before
sending the first: the body's length is known from the indices, and each
segment is final once a worker has stored it. So the fetch app starts the
body at once and sends each segment as it appears, looking for it with a
short, growing pause and at the task now and then. A task that failed,
was cancelled or expired ends the stream (the client sees fewer bytes
than Content-Length); a segment missing once the task is ready, and every
segment still missing once none has come for the patience (the client's
`wait`), is computed by the fetch app.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fibod.errors import ExpiredError, NotFoundError, UnavailableError
from fibod.taskmodel import TaskState

#: First and longest pause between looks at a missing segment, seconds. A
#: worker stores a 2 MiB segment every few ms, so a longer pause leaves the
#: stream behind (20 ms: cold sn=40,000 took ~0.3-0.37 s, 4 ms: ~0.26-0.31 s);
#: a look is one GET of a missing key.
FIRST_STEP_S = 0.001
MAX_STEP_S = 0.004
#: Seconds between looks at the task's state while a segment is missing.
STATE_EVERY_S = 0.05


class StreamAbandoned(Exception):
    """The task will not be completed by its workers; the stream stops."""


class SegmentWait:
    """Wait for segments of one running task as its workers store them.

    `patience_s` bounds the whole stream's waiting, not each segment's:
    after that long without a new segment, every segment still missing is
    left to the caller at once (the workers seem stuck or gone).
    """

    def __init__(
        self,
        read: Callable[[int], bytes | None],
        state: Callable[[], TaskState],
        patience_s: float,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._state = state
        self._patience_s = patience_s
        self._sleep = sleep
        self._clock = clock
        self._gave_up = False
        self._last_progress = clock()

    def until_stored(self, j: int) -> bytes | None:
        """Return segment j once stored; None when the caller should compute it.

        None comes once the task is ready without it (evicted since), or
        when no segment came for `patience_s`. Raises StreamAbandoned if
        the task failed, was cancelled, expired or was deleted.
        """
        step = FIRST_STEP_S
        look_at_task = self._clock() + STATE_EVERY_S
        while True:
            stored = self._read(j)
            now = self._clock()
            if stored is not None:
                self._last_progress = now
                return stored
            if self._gave_up:
                return None
            if now >= look_at_task:
                look_at_task = now + STATE_EVERY_S
                try:
                    state = self._state()
                except (ExpiredError, NotFoundError) as exc:
                    raise StreamAbandoned(str(exc)) from None
                except UnavailableError:
                    state = TaskState.RUNNING  # the segments may still come: look again later
                if state is TaskState.READY:
                    return self._read(j)
                if state in (TaskState.FAILED, TaskState.CANCELLED):
                    raise StreamAbandoned(f"the task is {state}")
            if now >= self._last_progress + self._patience_s:
                self._gave_up = True
                return None
            self._sleep(step)
            step = min(step * 2, MAX_STEP_S)
