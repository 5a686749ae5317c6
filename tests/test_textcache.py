"""The text cache on a real folder: complete files only, a cap, LRU eviction."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fibod.textcache import EVICT_GRACE_S, PART_SUFFIX, TextCache, accel_uri, file_name


class Clock:
    """A settable clock: eviction order and grace depend on it."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def put(cache: TextCache, name: str, size: int, mtime_s: int = 1_700_000_000) -> bool:
    writer = cache.writer(name, size, mtime_s)
    if writer is None:
        return False
    writer.write(b"x" * size)
    writer.commit()
    return True


def files(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if not p.name.startswith(".")}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_body_is_published_whole_with_the_apps_mtime(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 1000, clock)
    writer = cache.writer("v1-text-0-10", 6, 1_700_000_123)
    assert writer is not None
    # while written, it is only a part file, counted at its full length
    assert files(tmp_path) == {"v1-text-0-10" + PART_SUFFIX}
    assert not cache.has("v1-text-0-10", 6)
    writer.write(b"\x000 1 ")
    writer.write(b"1")
    writer.commit()
    assert (tmp_path / "v1-text-0-10").read_bytes() == b"\x000 1 1"
    assert os.stat(tmp_path / "v1-text-0-10").st_mtime == 1_700_000_123
    assert cache.has("v1-text-0-10", 6)


def test_a_cut_write_leaves_no_file(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 1000, clock)
    writer = cache.writer("a", 100, 0)
    assert writer is not None
    writer.write(b"x" * 60)
    writer.commit()  # short of its length: dropped, never published
    assert files(tmp_path) == set()
    writer = cache.writer("a", 100, 0)
    assert writer is not None
    writer.write(b"x" * 60)
    writer.abort()
    assert files(tmp_path) == set()


def test_one_writer_per_body(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 1000, clock)
    first = cache.writer("a", 10, 0)
    assert first is not None
    # another request (another process: flock is per open file) gets none
    assert TextCache(str(tmp_path), 1000, clock).writer("a", 10, 0) is None
    first.write(b"y" * 10)
    first.commit()
    # and none once the file is there
    assert cache.writer("a", 10, 0) is None
    assert (tmp_path / "a").read_bytes() == b"y" * 10


def test_a_file_of_another_length_is_deleted_not_served(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 1000, clock)
    assert put(cache, "a", 100)
    os.truncate(tmp_path / "a", 40)
    assert not cache.has("a", 100)
    assert files(tmp_path) == set()


def test_the_cap_holds_and_the_least_recently_served_go_first(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 300, clock)
    for name in ("a", "b", "c"):
        assert put(cache, name, 100)
        clock.now += EVICT_GRACE_S + 1
    # a served again: b is now the least recently served
    assert cache.has("a", 100)
    clock.now += EVICT_GRACE_S + 1
    assert put(cache, "d", 100)
    assert files(tmp_path) == {"a", "c", "d"}
    # a body needing two files' room takes the two oldest
    clock.now += EVICT_GRACE_S + 1
    assert put(cache, "e", 200)
    assert files(tmp_path) == {"d", "e"}
    assert cache.usage() == (2, 300)
    # larger than the cap: never cached
    assert cache.writer("f", 301, 0) is None


def test_files_just_served_are_not_evicted(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 200, clock)
    assert put(cache, "a", 100)
    assert put(cache, "b", 100)
    clock.now += EVICT_GRACE_S / 2
    # nginx may be about to open either: no room is made, nothing written
    assert not put(cache, "c", 100)
    assert files(tmp_path) == {"a", "b"}
    clock.now += EVICT_GRACE_S
    assert put(cache, "c", 100)
    assert len(files(tmp_path)) == 2


def test_a_part_whose_writer_died_is_deleted_by_the_next_scan(tmp_path: Path, clock: Clock) -> None:
    (tmp_path / ("dead" + PART_SUFFIX)).write_bytes(b"z" * 150)
    cache = TextCache(str(tmp_path), 200, clock)
    assert put(cache, "a", 100)
    assert files(tmp_path) == {"a"}


def test_clear_deletes_the_complete_files(tmp_path: Path, clock: Clock) -> None:
    cache = TextCache(str(tmp_path), 1000, clock)
    assert put(cache, "a", 10)
    writing = cache.writer("b", 10, 0)
    assert writing is not None
    assert cache.clear() == 1
    assert files(tmp_path) == {"b" + PART_SUFFIX}
    writing.abort()


def test_names_and_uris_come_from_the_etag() -> None:
    assert file_name('"v1-binary-2097152-0-3000"') == "v1-binary-2097152-0-3000"
    assert accel_uri("v1-text-0-5", ranged=False) == "/__fibod/cache/whole/v1-text-0-5"
    assert accel_uri("v1-text-0-5", ranged=True) == "/__fibod/cache/range/v1-text-0-5"
    with pytest.raises(ValueError):
        file_name('"../etc/passwd"')


def test_fill_later_writes_a_body_asked_for_again_once_in_the_background(tmp_path: Path) -> None:
    cache = TextCache(str(tmp_path), 1000)
    calls = []

    def produce() -> Iterator[bytes]:
        calls.append(1)
        yield b"\x00"
        yield b"0 1 1 "

    cache.fill_later("a", 7, 0, produce)
    time.sleep(0.2)
    assert calls == [] and files(tmp_path) == set()  # asked for once: not worth a file
    cache.fill_later("a", 7, 0, produce)
    deadline = time.monotonic() + 10
    while not cache.has("a", 7):
        assert time.monotonic() < deadline, "never written"
        time.sleep(0.01)
    cache.fill_later("a", 7, 0, produce)  # there already: the writer declines
    cache.fill_later("big", 1001, 0, produce)  # larger than the cap: nothing
    time.sleep(0.2)
    assert (tmp_path / "a").read_bytes() == b"\x000 1 1 "
    assert calls == [1] and files(tmp_path) == {"a"}
