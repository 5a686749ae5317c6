"""Measure the running one-machine stack end to end; print Markdown for BENCHMARKS.md.

    FIBOD_RATE_LIMIT=1000000r/s FIBOD_RATE_BURST=100000 make up
    .venv/bin/python bench/pipeline.py [--quick]

Every figure is printed with its goal (issue 9) and, where one exists, a
baseline measured in the same run:

1. Cold sn=200,000 from submit to ready, 5 runs: median, slowest/fastest,
   against the kernel writing the same numbers (`fibod seq 200000`) in
   the same run; Redis commands per segment (INFO commandstats of both
   stores, the benchmark's own waiting excluded: it sleeps 0.25 s). The
   time is the submit's round trip plus the task's created -> finished
   stamps; what polling every 0.25 s saw is printed beside it.
2. Cold sn=40,000 from submit to the last byte of the answer, the same sn
   asked again (the fetch also fills its text cache) and new sns asked first.
3. A stored sn=100,000 (~1.05 GB) through nginx by the fetch app, against
   nginx serving the same bytes from a file, interleaved; fetch peak RSS.
   The fetch app's first answer writes its text cache, so the rounds
   measure warm fetches as nginx sends them from the cache file.
4. Submissions per second through nginx with wrk, and the p99 latency,
   with the workers at FIBOD_WORKER_NICE and, as the baseline, at 0 (as
   root), interleaved, after a warm-up run; after each run, the time the
   workers took to drain the backlog.
5. The sequence store's persistence: ingest of 2 MiB SETs with the
   append-only file on and off (switched at run time, interleaved), and
   the time a restart takes with what the cold runs stored.
6. Scaling: cold sn=200,000 with 1 and 2 workers (worker-1 stopped, then
   started), and the workers' CPU seconds per GB stored.

Reads go to /dev/null through curl so the client is not the bottleneck.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fibod import keys
from fibod.config import discover
from fibod.redis_client import BulkValueConnection, connect, connect_task_store
from fibod.sequences import SequenceStore
from fibod.textcache import TextCache

ROOT = Path(__file__).resolve().parent.parent
#: The running stack's settings (its var/conf/fibod.env, then the environment).
SETTINGS = discover()
ENV = dict(os.environ) | SETTINGS.to_env()
BASE = SETTINGS.base_url
STORE = SequenceStore.from_settings(SETTINGS, admin=True)
SEQUENCE_REDIS = connect(SETTINGS.sequence_redis_url, SETTINGS, decode=True, admin=True)
#: Writes segments as the workers do (fibod.redis_client.BulkValueConnection).
SEQUENCE_WRITER = connect(
    SETTINGS.sequence_redis_url,
    SETTINGS,
    decode=False,
    admin=True,
    connection_class=BulkValueConnection,
)
TASK_REDIS = connect_task_store(SETTINGS, admin=True)
#: This machine's text cache (fibod/textcache.py): emptied for cold runs.
TEXT_CACHE = TextCache(SETTINGS.text_cache_dir, SETTINGS.text_cache_bytes)
SUPERVISORCTL = [
    str(ROOT / ".venv" / "bin" / "supervisorctl"),
    "-c",
    str(ROOT / "supervisord.conf"),
]


def submit(sn: int) -> str:
    """Submit a task; return its id."""
    with urllib.request.urlopen(f"{BASE}/myapp/fibo?sn={sn}", timeout=30) as resp:
        return resp.read().decode()


def state(task_id: str) -> str:
    with urllib.request.urlopen(f"{BASE}/myapp/tasks/{task_id}", timeout=30) as resp:
        return str(json.loads(resp.read())["state"])


def wait_ready(task_id: str, step_s: float = 0.01, timeout_s: float = 300) -> None:
    """Poll the task's state every step_s until ready."""
    deadline = time.monotonic() + timeout_s
    while (got := state(task_id)) != "ready":
        if got == "failed" or time.monotonic() > deadline:
            raise SystemExit(f"task {task_id} is {got}")
        time.sleep(step_s)


def curl(
    url: str, out: str = os.devnull, headers: tuple[str, ...] = ()
) -> tuple[int, int, float, float]:
    """GET url into out; return (status, bytes, seconds, bytes per second)."""
    fmt = "%{http_code} %{size_download} %{time_total} %{speed_download}"
    extra = [arg for header in headers for arg in ("-H", header)]
    result = subprocess.run(
        ["curl", "-s", *extra, "-o", out, "-w", fmt, url],
        capture_output=True,
        text=True,
        check=True,
    )
    code, size, total, speed = result.stdout.split()
    return int(code), int(size), float(total), float(speed)


def commands() -> int:
    """Commands both stores ran since their stats were last reset."""
    total = 0
    for client in (SEQUENCE_REDIS, TASK_REDIS):
        total += sum(v["calls"] for v in client.info("commandstats").values())
    return total


def program_pids(prefix: str) -> list[int]:
    """Pids of this stack's programs named prefix..., and of their children."""
    out = subprocess.run([*SUPERVISORCTL, "status"], capture_output=True, text=True).stdout
    pids = {
        int(words[3].rstrip(","))
        for words in (line.split() for line in out.splitlines())
        if len(words) > 3 and words[0].startswith(prefix) and words[1] == "RUNNING"
    }
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) in pids:
                pids.add(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pids)


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes used so far (those gone count nothing)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def worker_cpu_s() -> float:
    """CPU seconds this stack's workers used so far."""
    return cpu_s(program_pids("worker:"))


def cold_ready(sn: int) -> tuple[float, float, float, float]:
    """Clear the store, compute sn; return (seconds, commands per segment, worker CPU s, polled s).

    The seconds are the submit's own round trip plus the task's created ->
    finished stamps (ms, written by the submit app and the worker): the
    benchmark looks every 0.25 s, so as not to add its own commands, and
    the time it sees is late by up to that much (polled s).
    """
    STORE.clear()
    for client in (SEQUENCE_REDIS, TASK_REDIS):
        client.config_resetstat()
    cpu = worker_cpu_s()
    started = time.perf_counter()
    task_id = submit(sn)
    submitted_s = time.perf_counter() - started
    wait_ready(task_id, step_s=0.25)
    polled_s = time.perf_counter() - started
    per_segment = commands() / len(STORE.layout.covering(sn))
    stamps = TASK_REDIS.hmget(keys.task_key(task_id), "created", "finished")
    seconds = submitted_s + (int(stamps[1]) - int(stamps[0])) / 1000
    return seconds, per_segment, worker_cpu_s() - cpu, polled_s


def kernel_seconds(sn: int) -> float:
    """The kernel alone writing the same numbers as text (`fibod seq sn`)."""
    started = time.perf_counter()
    subprocess.run([str(ROOT / ".venv" / "bin" / "fibod"), "seq", str(sn)], env=ENV,
                   stdout=subprocess.DEVNULL, check=True)  # fmt: skip
    return time.perf_counter() - started


def cold_big(sn: int, runs: int) -> list[str]:
    times, per_segment, kernel, polled = [], [], [], []
    for _ in range(runs):
        seconds, cmds, _cpu, polled_s = cold_ready(sn)
        times.append(seconds)
        per_segment.append(cmds)
        polled.append(polled_s)
        kernel.append(kernel_seconds(sn))
    median, k = statistics.median(times), statistics.median(kernel)
    return [
        f"| cold sn={sn:,} submit to ready ({runs} runs; task stamps, polled every 0.25 s: "
        f"{statistics.median(polled):.2f} s) | {median:.2f} s (fastest "
        f"{min(times):.2f}, slowest {max(times):.2f}: **{max(times) / min(times):.2f}x**) "
        f"| `fibod seq {sn}` alone: {k:.2f} s; pipeline **{median / k:.1f}x** that "
        f"| ≤ 3 s (moonshot 2 s), slowest ≤ 1.3x fastest |",
        f"| Redis commands per segment, cold sn={sn:,} | {statistics.median(per_segment):.2f} "
        f"| before: ~1,070 (1.06 million for 987 segments) | ≤ 5 |",
    ]


def cold_small(sn: int, runs: int) -> list[str]:
    """Cold sn from submit to the last byte, long-polled (wait=30), two ways, interleaved.

    Streamed as computed: the fetch app answers the long-poll as soon as
    a worker runs the task and sends each segment once stored
    (fibod/early.py). The baseline waits for ready first, then streams:
    the same GET with `Range: bytes=0-` (a range waits for ready), whose
    206 carries the same bytes. Each run asks for a new sn (sn, sn+1, ...)
    on an emptied store and text cache, so every body is cold and first
    asked for.
    """
    times: dict[str, list[float]] = {"early": [], "ready first": []}
    for i in range(runs):
        for label, headers, expected in (
            ("early", (), 200),
            ("ready first", ("Range: bytes=0-",), 206),
        ):
            n = sn + 2 * i + (label == "ready first")
            STORE.clear()
            TEXT_CACHE.clear()  # else nginx sends the text the last run left
            started = time.perf_counter()
            url = f"{BASE}/myapp/fibotask?id={submit(n)}&wait=30"
            code, size, _, _ = curl(url, headers=headers)
            times[label].append(time.perf_counter() - started)
            if code != expected:
                raise SystemExit(f"sn={n}: status {code}, {size} bytes")
    early, ready_first = (statistics.median(times[k]) for k in ("early", "ready first"))
    return [
        f"| cold sn={sn:,} submit to last byte, streamed as computed ({runs} runs) | "
        f"{early:.3f} s (slowest {max(times['early']):.3f}) "
        f"| waiting for ready first: {ready_first:.3f} s; **{ready_first / early:.2f}x** "
        f"| ≤ 0.25 s |"
    ]


def fetch_workers_peak_rss_mb() -> float:
    """Largest VmHWM among this stack's fetch app processes."""
    peaks = []
    for pid in program_pids("fetch"):
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            if match:
                peaks.append(int(match.group(1)) / 1024)
    return max(peaks, default=float("nan"))


def restart(program: str) -> None:
    subprocess.run([*SUPERVISORCTL, "restart", program], check=True, capture_output=True)


def wait_cached(url: str, timeout_s: float = 60) -> bool:
    """Wait until nginx sends url from the text cache (X-Fibod-Cache); tell whether it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            if resp.headers.get("X-Fibod-Cache") == "hit":
                return True
        time.sleep(0.2)
    return False


def streaming(sn: int, rounds: int) -> list[str]:
    """Fetch app against nginx static for the same bytes, interleaved."""
    restart("fetch")
    time.sleep(2)
    task_id = submit(sn)
    wait_ready(task_id)
    static_dir = Path(SETTINGS.state_dir) / "static"
    static_dir.mkdir(parents=True, exist_ok=True)
    static_file = static_dir / f"fibo-{sn}.txt"
    url = f"{BASE}/myapp/fibotask?id={task_id}"
    code, size, _, _ = curl(url, str(static_file))
    if code != 200:
        raise SystemExit(f"stream of sn={sn}: status {code}")
    cached = wait_cached(url)
    fetch_speed, static_speed = [], []
    for _ in range(rounds):
        fetch_speed.append(curl(url)[3])
        static_speed.append(curl(f"{BASE}/static/{static_file.name}")[3])
    static_file.unlink()
    f, s = statistics.median(fetch_speed), statistics.median(static_speed)
    return [
        f"| warm sn={sn:,} ({size / 1e9:.2f} GB) through nginx by the fetch app | "
        f"{f / 1e9:.2f} GB/s{'' if cached else ' (never in the text cache)'} | "
        f"nginx static file: {s / 1e9:.2f} GB/s, **{f / s:.0%}** | ≥ 90% |",
        f"| fetch app peak RSS | {fetch_workers_peak_rss_mb():.0f} MB | | < 100 MB |",
    ]


def wrk_submit(seconds: int) -> tuple[str, str, str]:
    """wrk against the submit endpoint; requests/s, p99 latency, answers not 202."""
    url = f"{BASE}/myapp/fibo?sn=100"
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return (
        rps.group(1) if rps else "?",
        p99.group(1) if p99 else "?",
        non2xx.group(1) if non2xx else "0",
    )


def queue_lag() -> int:
    """Task messages not yet consumed, summed over the topic's partitions (the monitor's metric)."""
    with urllib.request.urlopen(f"{BASE}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    return int(
        sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("fibod_queue_lag{")
        )
    )


def drained_s(timeout_s: float = 600) -> float:
    """Wait until the workers have consumed every queued task; seconds it took."""
    started = time.monotonic()
    while queue_lag() > 0:
        if time.monotonic() - started > timeout_s:
            raise SystemExit(f"the task queue did not drain within {timeout_s:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def renice_workers(nice: int) -> bool:
    """Set every thread of every worker to this niceness; tell whether all of them took it.

    A refusal (raising a priority back needs root) is printed, never left
    half done in silence: the caller skips that run.
    """
    try:
        for pid in program_pids("worker:"):
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
    except OSError as exc:
        print(f"(workers not set to nice {nice}: {exc}; that run is skipped)", file=sys.stderr)
        return False
    return True


#: Seconds of submissions before the measured runs (10 until 2026-11-30's later session).
WARMUP_S = 30


def submissions(seconds: int, rounds: int) -> list[str]:
    """wrk with the workers at their niceness and at 0 (the baseline), interleaved.

    A first run of WARMUP_S warms the broker's JIT up (its CPU per message
    halves over its first minute of load) and is left out. Each run's
    backlog is drained before the next.
    """
    limited = "" if SETTINGS.rate_limit.startswith("1000000") else " (rate limit NOT lifted)"
    drained_s()
    wrk_submit(WARMUP_S)
    drained_s()
    settings = [(SETTINGS.worker_nice, "configured")]
    if SETTINGS.worker_nice and os.geteuid() == 0:  # raising a priority back needs root
        settings.append((0, "baseline"))
    runs: dict[int, list[tuple[float, str, str, float]]] = {nice: [] for nice, _ in settings}
    for _ in range(rounds):
        for nice, _label in settings:
            if not renice_workers(nice):
                continue
            rps, p99, non2xx = wrk_submit(seconds)
            runs[nice].append((float(rps) if rps != "?" else 0.0, p99, non2xx, drained_s()))
    renice_workers(SETTINGS.worker_nice)
    rows = []
    for nice, label in settings:
        if not runs[nice]:
            continue
        rates = [r[0] for r in runs[nice]]
        median = statistics.median(rates)
        each = ", ".join(f"{r:.0f}/s p99 {p}" for r, p, _n, _d in runs[nice])
        failed = sum(int(n) for _r, _p, n, _d in runs[nice])
        drain = statistics.median(d for *_x, d in runs[nice])
        rows.append(
            f"| submissions, wrk -t2 -c32 -d{seconds}s{limited}, workers at nice {nice} ({label}), "
            f"{len(rates)} runs | median **{median:.0f} req/s** ({each}), {failed} not 202 "
            f"| each run's ~{median * seconds:,.0f} tasks drained in {drain:.0f} s "
            "| ≥ 2,000/s, p99 ≤ 50 ms |"
        )
    return rows


def ingest_gb_s(segments: int, appendonly: str) -> float:
    """2 MiB SETs pipelined 8 at a time, sent as the workers send them; GB/s."""
    SEQUENCE_REDIS.config_set("appendonly", appendonly)
    value = os.urandom(2 << 20)
    started = time.perf_counter()
    for first in range(0, segments, 8):
        with SEQUENCE_WRITER.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + 8, segments)):
                pipe.set(f"fibod:bench:{i}", value)
            pipe.execute()
    seconds = time.perf_counter() - started
    SEQUENCE_REDIS.delete(*[f"fibod:bench:{i}" for i in range(segments)])
    return segments * len(value) / seconds / 1e9


def persistence(rounds: int) -> list[str]:
    configured = SEQUENCE_REDIS.config_get("appendonly")["appendonly"]
    aof, none = [], []
    try:
        for _ in range(rounds):
            aof.append(ingest_gb_s(500, "yes"))
            none.append(ingest_gb_s(500, "no"))
    finally:
        SEQUENCE_REDIS.config_set("appendonly", configured)
    # a restart with what the cold runs stored (sn=200,000: ~2 GB)
    cold_ready(200_000)
    stored = SEQUENCE_REDIS.info("memory")["used_memory"]
    started = time.perf_counter()
    restart("sequence-redis")
    while True:
        try:
            if SEQUENCE_REDIS.ping():
                break
        except Exception:
            time.sleep(0.05)
    restart_s = time.perf_counter() - started
    kept = SEQUENCE_REDIS.dbsize()
    return [
        f"| sequence store ingest, 2 MiB SETs | AOF everysec {statistics.median(aof):.2f} GB/s"
        f" | no persistence {statistics.median(none):.2f} GB/s "
        f"(**{statistics.median(none) / statistics.median(aof):.1f}x**) | choose by measurement |",
        f"| sequence store restart with {stored / 1e9:.1f} GB stored (appendonly {configured}) "
        f"| {restart_s:.1f} s, {kept} keys kept | | |",
    ]


def scaling(sn: int, runs: int) -> list[str]:
    rows, rates = [], {}
    for workers in (1, 2):
        action = "stop" if workers == 1 else "start"
        subprocess.run([*SUPERVISORCTL, action, "worker:worker-1"], check=True, capture_output=True)
        time.sleep(12)  # the group rebalances
        results = [cold_ready(sn) for _ in range(runs)]
        seconds = statistics.median(r[0] for r in results)
        cpu = statistics.median(r[2] for r in results)
        gigabytes = sum(n.used_memory for n in STORE.node_stats()) / 1e9
        rates[workers] = seconds
        rows.append(
            f"| cold sn={sn:,}, {workers} worker{'s' if workers > 1 else ''} | {seconds:.2f} s "
            f"| workers' CPU {cpu:.1f} s, **{cpu / gigabytes:.2f} CPU-s per GB stored** | |"
        )
    rows.append(f"| 2 workers against 1 | **{rates[1] / rates[2]:.2f}x** faster | | scales |")
    return rows


def main() -> None:
    quick = "--quick" in sys.argv
    runs = 3 if quick else 5
    print("| what | measured | baseline (same run) | goal |\n|---|---|---|---|", flush=True)
    for row in cold_big(200_000, runs):
        print(row, flush=True)
    for row in cold_small(40_000, runs):
        print(row, flush=True)
    for row in streaming(40_000 if quick else 100_000, runs):
        print(row, flush=True)
    for row in submissions(5 if quick else 10, 2):
        print(row, flush=True)
    for row in persistence(runs):
        print(row, flush=True)
    for row in scaling(200_000, 3):
        print(row, flush=True)


if __name__ == "__main__":
    try:
        main()
    except urllib.error.URLError as exc:
        raise SystemExit(f"the stack does not answer at {BASE}: {exc} (make up)") from None
