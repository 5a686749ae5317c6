"""The fetch host's text cache: ready bodies as files that nginx sends.

A ready body depends only on its ETag (fibod/ranges.py), and rendering
it from Redis costs a fetch thread for the whole download. So a body
asked for again has it written to a file in the background (`fill_later`:
one segment in memory at a time, at the store's pace, not the client's),
and later requests are answered with X-Accel-Redirect:
nginx sends the file with sendfile, event-driven, and a slow reader holds
an nginx connection, not a thread.

Files are complete or absent: a body is written under `<name>.part`,
preallocated to its length, by the one process holding that file's
flock, and renamed to `<name>` only once whole. A hit checks the size.
The folder stays under its cap: room is made, under a folder lock,
before a body is written, by deleting the least recently served files
(their atime, set on each hit). A `.part` whose writer died (its lock is
free) is deleted by the next scan.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from fibod.memory import release_free_memory

log = logging.getLogger("fibod.textcache")

#: The nginx locations that serve the folder (internal), by what nginx
#: may do with a Range: `whole/` sends the file whole, `range/` cuts the
#: one range the app has checked (ops/nginx.conf.in).
ACCEL_PREFIX = "/__fibod/cache/"
WHOLE = "whole/"
RANGE = "range/"
#: Suffix of a file being written.
PART_SUFFIX = ".part"
#: The folder lock taken while making room.
LOCK_NAME = ".lock"
#: A file served this recently is never evicted: nginx opens it just after
#: the app's answer, and an eviction in between would answer 404.
EVICT_GRACE_S = 10.0
#: Bodies written at once per process: one leaves the other core to the
#: streams (a body is written at ~1 s per GB).
FILL_THREADS = 1
#: Nice value of the writing thread: a fill is background work, and without
#: it a 376 MB fill right after a fetch slowed the next answers of every app
#: on the 2 cores (a submit 110 ms instead of 3 ms, a small fetch 97 ms).
FILL_NICE = 19
#: Bodies a process remembers as asked for once. A body is written on its
#: second request: writing costs ~1 s of CPU per GB, shares the process's
#: GIL with its requests (a 376 MB fill took a 503 from 4 to 13 ms), and
#: gains nothing for a body fetched once.
ASKED_ONCE_MAX = 4096
_NAME = re.compile(r"[A-Za-z0-9.-]{1,200}")


def file_name(etag: str) -> str:
    """Return the cache file name of a body from its (quoted) ETag."""
    name = etag.strip('"')
    if not _NAME.fullmatch(name):
        raise ValueError(f"no cache file name for ETag {etag!r}")
    return name


def accel_uri(name: str, ranged: bool) -> str:
    """Return the X-Accel-Redirect URI of a cached body."""
    return ACCEL_PREFIX + (RANGE if ranged else WHOLE) + name


@dataclass(frozen=True)
class _Entry:
    path: str
    size: int
    atime: float


class TextCache:
    """A folder of complete bodies, kept under cap_bytes."""

    def __init__(
        self, directory: str, cap_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.cap_bytes = cap_bytes
        self._clock = clock
        os.makedirs(directory, exist_ok=True)
        self._fills: ThreadPoolExecutor | None = None
        self._filling: set[str] = set()
        self._asked: OrderedDict[str, None] = OrderedDict()
        self._filling_lock = threading.Lock()

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def has(self, name: str, length: int) -> bool:
        """Tell whether the whole body is cached; mark it just served.

        A file of another length (cut, damaged by hand) is deleted.
        """
        path = self._path(name)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return False
        if stat.st_size != length:
            log.error("cached %s: %d bytes, %d expected: deleting it", name, stat.st_size, length)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return False
        with contextlib.suppress(FileNotFoundError):  # evicted meanwhile: nginx answers 404
            os.utime(path, ns=(int(self._clock() * 1e9), stat.st_mtime_ns))
        return True

    def writer(self, name: str, length: int, mtime_s: int) -> CacheWriter | None:
        """Return the writer of a body, or None (too large, no room, being written)."""
        if length > self.cap_bytes:
            return None
        part = self._path(name + PART_SUFFIX)
        fd = _locked(part)
        if fd is None:
            return None  # another request writes it
        try:
            if os.path.exists(self._path(name)) or not self._make_room(length, part):
                raise _Skip
            os.ftruncate(fd, 0)
            os.posix_fallocate(fd, 0, length)  # counted at its full size by other scans
        except _Skip:
            _drop(part, fd)
            return None
        except OSError as exc:
            log.warning("cannot cache %s: %s", name, exc)
            _drop(part, fd)
            return None
        return CacheWriter(fd, part, self._path(name), length, mtime_s, self._clock)

    def fill_later(
        self, name: str, length: int, mtime_s: int, produce: Callable[[], Iterator[bytes]]
    ) -> None:
        """Write the bytes produce() yields as `name`, in the background, once.

        The caller goes on (it streams the body itself meanwhile). Nothing
        happens the first time a process is asked for a body, nor if it is
        too large, being written, or in the cache.
        """
        if length > self.cap_bytes:
            return
        with self._filling_lock:
            if name not in self._asked:
                self._asked[name] = None
                if len(self._asked) > ASKED_ONCE_MAX:
                    self._asked.popitem(last=False)
                return
            if name in self._filling:
                return
            self._filling.add(name)
            if self._fills is None:
                self._fills = ThreadPoolExecutor(
                    FILL_THREADS, thread_name_prefix="cache-fill", initializer=_background
                )
        self._fills.submit(self._fill, name, length, mtime_s, produce)

    def _fill(
        self, name: str, length: int, mtime_s: int, produce: Callable[[], Iterator[bytes]]
    ) -> None:
        try:
            writer = self.writer(name, length, mtime_s)
            if writer is None:
                return  # another process writes it, or it is there, or no room
            try:
                for chunk in produce():
                    writer.write(chunk)
                writer.commit()
            finally:
                writer.abort()  # after a commit: nothing
        except Exception:  # a fill is worth a log line, never a failed request
            log.exception("could not write %s to the text cache", name)
        finally:
            with self._filling_lock:
                self._filling.discard(name)
            release_free_memory()  # the rendered pieces leave no peak behind

    def _make_room(self, length: int, own_part: str) -> bool:
        """Delete least recently served files until length fits under the cap."""
        with _folder_lock(self._path(LOCK_NAME)):
            entries, total = [], 0
            for entry in self._scan(own_part):
                total += entry.size
                if not entry.path.endswith(PART_SUFFIX):
                    entries.append(entry)
            now = self._clock()
            for entry in sorted(entries, key=lambda e: e.atime):
                if total + length <= self.cap_bytes:
                    break
                if now - entry.atime < EVICT_GRACE_S:
                    break  # everything left was served just now
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    log.info("evicted %s (%d bytes)", os.path.basename(entry.path), entry.size)
                total -= entry.size
            return total + length <= self.cap_bytes

    def _scan(self, own_part: str) -> Iterator[_Entry]:
        """Yield the folder's files; delete parts whose writer is gone."""
        with os.scandir(self.directory) as found:
            for item in found:
                if item.name == LOCK_NAME or item.path == own_part or not item.is_file():
                    continue
                if item.name.endswith(PART_SUFFIX) and _stale(item.path):
                    continue
                try:
                    stat = item.stat()
                except FileNotFoundError:
                    continue
                yield _Entry(item.path, stat.st_size, stat.st_atime)

    def usage(self) -> tuple[int, int]:
        """Return the complete files and the bytes the folder holds (parts at full length)."""
        entries = list(self._scan(""))
        done = sum(1 for e in entries if not e.path.endswith(PART_SUFFIX))
        return done, sum(e.size for e in entries)

    def clear(self) -> int:
        """Delete every complete file (parts being written finish); return how many."""
        deleted = 0
        with _folder_lock(self._path(LOCK_NAME)):
            for entry in self._scan(""):
                if not entry.path.endswith(PART_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        deleted += 1
        return deleted


class CacheWriter:
    """Write one body to its part file; publish it only when whole."""

    def __init__(
        self,
        fd: int,
        part: str,
        final: str,
        length: int,
        mtime_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fd: int | None = fd
        self._clock = clock
        self._part = part
        self._final = final
        self._length = length
        self._mtime_s = mtime_s
        self._written = 0

    def write(self, data: bytes) -> None:
        """Append data; a failure abandons the file, never the stream."""
        if self._fd is None:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._written += len(data)
        except OSError as exc:
            log.warning("cannot cache %s: %s", os.path.basename(self._final), exc)
            self.abort()

    def commit(self) -> None:
        """Publish the file if every byte was written, else drop it."""
        if self._fd is None:
            return
        if self._written != self._length:
            self.abort()
            return
        try:
            # the app's Last-Modified, so nginx's own validators agree with it
            os.utime(self._fd, (self._clock(), self._mtime_s))
            os.rename(self._part, self._final)
        except OSError as exc:
            log.warning("cannot cache %s: %s", os.path.basename(self._final), exc)
            _drop(self._part, self._fd)
        else:
            os.close(self._fd)
        self._fd = None

    def abort(self) -> None:
        """Delete the part file (a cut stream, a write error)."""
        if self._fd is not None:
            _drop(self._part, self._fd)
            self._fd = None


class _Skip(Exception):
    pass


def _background() -> None:
    """Lower this thread's CPU priority (Linux: nice is per thread)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), FILL_NICE)


def _locked(path: str) -> int | None:
    """Open path and hold its flock; None if another holds it or it was replaced."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # the holder before us may have renamed or deleted this very file
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise BlockingIOError
    except OSError:
        os.close(fd)
        return None
    return fd


def _drop(part: str, fd: int) -> None:
    """Delete a part file this process holds, then let go of it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)
    os.close(fd)


def _stale(part: str) -> bool:
    """Delete a part file nobody writes (its process died); tell whether it was."""
    fd = _locked(part)
    if fd is None:
        return False
    _drop(part, fd)
    log.info("deleted %s: its writer is gone", os.path.basename(part))
    return True


@contextlib.contextmanager
def _folder_lock(path: str) -> Iterator[None]:
    # read-only is enough for flock, so a lock file that root created
    # (`fibod cache clear`) still opens for the run user's fetch app
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
