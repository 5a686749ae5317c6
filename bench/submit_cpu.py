"""Where the machine's CPU goes per submission: each program's share, per request; print Markdown.

    FIBOD_RATE_LIMIT=1000000r/s FIBOD_RATE_BURST=100000 make up
    .venv/bin/python bench/submit_cpu.py [--seconds S] [--rounds N] [--warmup S]

Runs bench/pipeline.py's submission load (wrk -t2 -c32 through nginx,
sn=100) after a warm-up run, and reads every program's CPU seconds (user +
system, all threads, from /proc) before and after each run: the submit
app, the broker, both Redis servers, nginx, the workers (at their
configured niceness), the fetch app, wrk itself, and what the machine
spent beyond them (/proc/stat). Figures are medians over the rounds, in
milliseconds of CPU per request answered: on 2 cores, 2,000/s needs the
total under 1 ms. Last, how fast the workers drain the backlog the runs
left (sn=100 tasks per second), with nothing else running.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
from pathlib import Path

from pipeline import BASE, SUPERVISORCTL, cpu_s, drained_s, program_pids, queue_lag

TICK = os.sysconf("SC_CLK_TCK")
#: Program (supervisor name prefix) -> the label printed.
PROGRAMS = {
    "submit": "submit app",
    "kafka": "Kafka broker",
    "task-redis": "task store (Redis)",
    "sequence-redis": "sequence store (Redis)",
    "nginx": "nginx",
    "worker": "workers",
    "fetch": "fetch app",
}


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (nor waiting on I/O)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICK


def wrk(seconds: int) -> tuple[int, float, str]:
    """One wrk run; (requests answered 202, its own CPU seconds, p99)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", f"{BASE}/myapp/fibo?sn=100"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    requests = re.search(r"(\d+) requests in", out)
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    answered = (int(requests.group(1)) if requests else 0) - (int(failed.group(1)) if failed else 0)
    return answered, own, p99.group(1) if p99 else "?"


def supervisor_names() -> list[str]:
    """The stack's program name prefixes present (supervisorctl's first column)."""
    out = subprocess.run([*SUPERVISORCTL, "status"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=30, help="seconds of load first, not counted")
    args = parser.parse_args()
    names = supervisor_names()
    groups = {
        label: [name for name in names if name.startswith(prefix)]
        for prefix, label in PROGRAMS.items()
    }
    wrk(args.warmup)  # the broker is slower in its first minute
    rows: dict[str, list[float]] = {label: [] for label in [*groups, "wrk", "rest", "total"]}
    rates, p99s = [], []
    for _ in range(args.rounds):
        pids = {label: [p for n in ns for p in program_pids(n)] for label, ns in groups.items()}
        before = {label: cpu_s(p) for label, p in pids.items()}
        busy = machine_busy_s()
        requests, own, p99 = wrk(args.seconds)
        busy = machine_busy_s() - busy
        spent = {label: cpu_s(p) - before[label] for label, p in pids.items()}
        spent["wrk"] = own
        spent["rest"] = busy - sum(spent.values())
        spent["total"] = busy
        for label, seconds in spent.items():
            rows[label].append(1000 * seconds / max(requests, 1))
        rates.append(requests / args.seconds)
        p99s.append(p99)
    print(
        f"| CPU per submission (ms), wrk -t2 -c32 -d{args.seconds}s, {args.rounds} rounds: "
        f"{statistics.median(rates):,.0f}/s median (p99 {', '.join(p99s)}) | median | runs |"
    )
    print("|---|---|---|")
    for label, values in rows.items():
        each = ", ".join(f"{v:.3f}" for v in values)
        print(f"| {label} | {statistics.median(values):.3f} | {each} |")
    backlog = queue_lag()
    took = drained_s()
    print(f"\nworkers drained a backlog of {backlog:,} tasks in {took:.1f} s: ", end="")
    print(f"{backlog / max(took, 1e-9):,.0f} tasks/s")


if __name__ == "__main__":
    main()
