"""Long-polls hold a bounded share of the fetch threads (issue 10, item 11).

A long-poll sleeps on a request thread; without a cap, enough of them
take every thread of the fetch app and a quick fetch queues behind them.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from tests.integration.clients import raw_get
from tests.integration.faults import record

#: Long-polls sent at once: more than the fetch app's 2 x 16 threads.
LONG_POLLS = 40
#: Loopback addresses they come from (nginx allows 16 fetch connections per address).
SOURCES = [f"127.0.0.{n}" for n in range(80, 88)]
#: How long each asks to wait, seconds.
WAIT_S = 8
#: Bound on a quick fetch's 99th percentile while the long-polls wait.
QUICK_P99_S = 0.1


def test_long_polls_beyond_the_cap_answer_at_once_and_quick_fetches_stay_quick(
    stack, http, settings, supervisor
) -> None:
    host, port = stack.address()
    # given a ready small task, and a task that stays queued (no worker runs)
    ready_id = http.submit(50)
    http.wait_ready(ready_id, 60)
    supervisor.stop("worker:*")
    try:
        queued_id = http.submit(60)

        def long_poll(i: int) -> tuple[int, str | None, float]:
            started = time.monotonic()
            status, headers, _ = raw_get(
                host,
                port,
                f"/myapp/fibotask?id={queued_id}&wait={WAIT_S}",
                source=SOURCES[i % len(SOURCES)],
                timeout_s=WAIT_S + 20,
            )
            wait_header = {k.lower(): v for k, v in headers.items()}.get("x-fibod-wait")
            return status, wait_header, time.monotonic() - started

        # when 40 long-polls come at once, and quick fetches follow while they wait
        with ThreadPoolExecutor(LONG_POLLS) as pool:
            polls = [pool.submit(long_poll, i) for i in range(LONG_POLLS)]
            time.sleep(1.0)
            quick = []
            for _ in range(60):
                started = time.monotonic()
                status, _, body = raw_get(
                    host, port, f"/myapp/fibotask?id={ready_id}", source="127.0.0.90"
                )
                quick.append(time.monotonic() - started)
                assert status == 200 and body[:1] == b"\x00"
            answers = [p.result() for p in polls]
    finally:
        supervisor.start("worker:*")
    # then every long-poll answered pending; those beyond the slots at once, marked busy
    slots = settings.fetch_workers * settings.fetch_max_waiting
    busy = [a for a in answers if a[1] == "busy"]
    waited = [a for a in answers if a[1] is None]
    assert {a[0] for a in answers} == {202}
    assert len(waited) <= slots and len(busy) >= LONG_POLLS - slots, (len(waited), len(busy))
    assert max(a[2] for a in busy) < 1.0 and min(a[2] for a in waited) >= WAIT_S - 0.5
    # and the quick fetches stayed quick
    p99 = statistics.quantiles(quick, n=100)[98]
    assert p99 < QUICK_P99_S, sorted(quick)[-5:]
    record(
        "test_long_polls_beyond_the_cap_answer_at_once_and_quick_fetches_stay_quick",
        long_polls=LONG_POLLS,
        waited=len(waited),
        answered_at_once=len(busy),
        quick_fetch_median_ms=round(statistics.median(quick) * 1000, 1),
        quick_fetch_p99_ms=round(p99 * 1000, 1),
    )
