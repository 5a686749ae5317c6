"""The submit app's own CPU per submission, called in-process without gunicorn.

    make up; .venv/bin/python bench/submit_app.py [requests] [rounds] [threads] 2>/dev/null

Builds the app as `fibod.web.get_app()` does (Observed around Falcon, the
running stack's task store and Kafka, metrics in multiprocess mode) and
calls it from `threads` threads as gunicorn's gthread pool would, with
the environ nginx's request gives. Prints this process's CPU time per
request (every thread, the Kafka delivery thread included) and the wall
time, median of the rounds, on stdout; the app's log lines go to
stderr. What gunicorn adds on top (its loop, request parsing) is not in
it: bench/submit_cpu.py measures the whole program.
The tasks made are deleted afterwards.
"""

from __future__ import annotations

import os
import tempfile

# prometheus_client picks its value class (mmap files or memory) on import
_METRICS_DIR = tempfile.mkdtemp(prefix="fibod-bench-metrics-")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = _METRICS_DIR

import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from fibod import health  # noqa: E402
from fibod.config import discover  # noqa: E402
from fibod.logs import configure_logging  # noqa: E402
from fibod.observe import Observed, observed_app  # noqa: E402
from fibod.queue import TaskPublisher  # noqa: E402
from fibod.tasks import TaskStore  # noqa: E402
from fibod.web import create_app  # noqa: E402

SUBMIT_QUERY = "sn=100"


def environ_of(query: str) -> dict[str, Any]:
    """The WSGI environ of a submission as nginx sends it upstream."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/myapp/fibo",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8001",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_X_REQUEST_ID": "0123456789abcdef0123456789abcdef",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def call(app: Observed, made: list[str]) -> None:
    """One submission: call the app, read its body, close it, as a server does."""
    status: list[str] = []

    def start_response(code: str, _headers: Any, _exc_info: Any = None) -> None:
        status.append(code)

    body = app(environ_of(SUBMIT_QUERY), start_response)
    try:
        task_id = b"".join(body).decode()
    finally:
        body.close()  # type: ignore[attr-defined]
    if not status or not status[0].startswith("202"):
        raise SystemExit(f"submission answered {status}: {task_id}")
    made.append(task_id)


def timed(app: Observed, requests: int, threads: int, made: list[str]) -> tuple[float, float]:
    """Microseconds of this process's CPU and of wall time per request."""
    share = requests // threads

    def run() -> None:
        for _ in range(share):
            call(app, made)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    done = share * threads
    return (
        1e6 * (time.process_time() - cpu) / done,
        1e6 * (time.perf_counter() - wall) / done,
    )


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    settings = discover()
    configure_logging(settings)  # as the app does: FIBOD_LOG_LEVEL decides what is written
    store = TaskStore.from_settings(settings)
    publisher = TaskPublisher.from_settings(settings, f"fibod-bench-{os.getpid()}")
    app = observed_app(
        create_app(settings, store, publisher), "submit", settings, (health.TASK_STORE,)
    )
    made: list[str] = []
    results = []
    try:
        timed(app, 400, threads, made)  # connections opened, script loaded
        for _ in range(rounds):
            results.append(timed(app, requests, threads, made))
    finally:
        publisher.close()
        for task_id in made:
            store.delete(task_id)
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    cpu = statistics.median(r[0] for r in results)
    wall = statistics.median(r[1] for r in results)
    print(f"submit app in-process, {threads} threads, {requests} requests x {rounds} rounds:")
    print(f"  CPU per request {cpu:.0f} µs (rounds {', '.join(f'{r[0]:.0f}' for r in results)})")
    print(f"  wall per request {wall:.0f} µs")


if __name__ == "__main__":
    main()
