"""Stream a stored body through the fetch app in-process, under malloc settings.

    make up; .venv/bin/python bench/stream_memory.py [sn] [rounds]

Needs the stack (its sequence and task stores). Each setting runs in its
own child process (glibc reads MALLOC_* once, at start), which builds the
fetch app as gunicorn would and iterates a GET of sn's body, text and
binary, without a socket: what is timed is reading the segments from
Redis, checking and rendering them (today's code in both). The text
cache is off in the children, so no fill runs beside the stream. The
settings:

- baseline: MALLOC_MMAP_THRESHOLD_=1 MB, ops/supervisor/fetch.conf until
  2026-11-30: each 2 MiB segment Redis sends (and hiredis's buffer for
  it) is a fresh mmap, whose first touch faults every page in;
- fetch.conf now: two arenas, buffers up to 4 MB from the heap, and up to
  8 MB freed at a heap's top kept, so a segment reuses the pages the one
  before it left.

Prints the median seconds per stream of each and their ratio.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import time

BASELINE = {"MALLOC_MMAP_THRESHOLD_": "1048576"}
FETCH_CONF = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": "4194304",
    "MALLOC_TRIM_THRESHOLD_": "8388608",
}


def child(sn: int, rounds: int) -> None:
    """Stream sn's body `rounds` times per format; print seconds per stream."""
    from fibod.config import discover

    settings = discover()
    os.environ.update(settings.to_env() | {"FIBOD_TEXT_CACHE_BYTES": "0"})  # no cache, no fills
    from fibod.client import FibodClient
    from fibod.fetch import get_app

    client = FibodClient(settings.base_url)
    task_id = client.submit(sn)
    client.wait(task_id, 120)
    app = get_app()
    statuses: list[str] = []

    def start_response(status: str, headers: object, exc_info: object = None) -> None:
        statuses.append(status)

    for fmt in ("text", "binary"):
        for _ in range(rounds):
            environ = {
                "REQUEST_METHOD": "GET",
                "PATH_INFO": "/myapp/fibotask",
                "QUERY_STRING": f"id={task_id}&format={fmt}",
                "SERVER_NAME": "bench",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "REMOTE_ADDR": "127.0.0.1",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(),
                "wsgi.errors": sys.stderr,
            }
            started = time.perf_counter()
            size = sum(len(chunk) for chunk in app(environ, start_response))
            seconds = time.perf_counter() - started
            if not statuses[-1].startswith("200"):
                raise SystemExit(f"{fmt}: {statuses[-1]}")
            print(f"{fmt} {seconds:.6f} {size}")


def measure(env: dict[str, str], sn: int, rounds: int) -> dict[str, tuple[float, int]]:
    """Run a child with env added; return {format: (median s per stream, bytes)}."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(sn), str(rounds)],
        env=dict(os.environ) | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = [line.split() for line in out if line.startswith(("text", "binary"))]
    return {
        fmt: (statistics.median(float(r[1]) for r in rows if r[0] == fmt), int(rows[-1][2]))
        for fmt in ("text", "binary")
        if any(r[0] == fmt for r in rows)
    }


def main() -> None:
    sn = int(sys.argv[1]) if len(sys.argv) > 1 else 40_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    ways = {"baseline (mmap over 1 MB)": BASELINE, "fetch.conf now": FETCH_CONF}
    results: dict[str, list[dict[str, tuple[float, int]]]] = {name: [] for name in ways}
    for _ in range(3):  # interleaved: the machine's noise falls on both
        for name, env in ways.items():
            results[name].append(measure(env, sn, rounds))
    print(f"| streaming sn={sn:,} in-process | text, median s | binary, median s |")
    print("|---|---|---|")
    medians: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        medians[name] = {fmt: statistics.median(r[fmt][0] for r in runs) for fmt in runs[0]}
        print(f"| {name} | {medians[name]['text']:.3f} | {medians[name]['binary']:.3f} |")
    base, now = medians["baseline (mmap over 1 MB)"], medians["fetch.conf now"]
    print(
        f"\nfetch.conf now streams text **{base['text'] / now['text']:.1f}x** and binary "
        f"**{base['binary'] / now['binary']:.1f}x** as fast as the baseline"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
