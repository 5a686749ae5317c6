"""Measure the running stack end to end; print Markdown for BENCHMARKS.md.

    make up && .venv/bin/python bench/pipeline.py [--quick]

1. sn=40,000 from submit to the last byte, cold (sequence store cleared)
   and warm, through nginx.
2. A stored sn=100,000 (~1.05 GB) streamed through nginx by the fetch app,
   against nginx serving the same bytes from a static file, interleaved;
   peak RSS of the fetch workers.
3. Submissions per second through nginx with wrk, and the p99 latency.

Reads go to /dev/null through curl so the client is not the bottleneck.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from fibod.config import discover
from fibod.kernel import get_kernel

ROOT = Path(__file__).resolve().parent.parent
#: The running stack's settings (its var/conf/fibod.env, then the environment).
SETTINGS = discover()
ENV = dict(os.environ) | SETTINGS.to_env()
BASE = SETTINGS.base_url


def submit(sn: int) -> str:
    """Submit a task; return its id."""
    with urllib.request.urlopen(f"{BASE}/myapp/fibo?sn={sn}", timeout=30) as resp:
        return resp.read().decode()


def curl(url: str, out: str = os.devnull) -> tuple[int, int, float, float]:
    """GET url into out; return (status, bytes, seconds, bytes per second)."""
    fmt = "%{http_code} %{size_download} %{time_total} %{speed_download}"
    result = subprocess.run(
        ["curl", "-s", "-o", out, "-w", fmt, url], capture_output=True, text=True, check=True
    )
    code, size, total, speed = result.stdout.split()
    return int(code), int(size), float(total), float(speed)


def text_bytes(sn: int) -> int:
    """Length of the wire text of F(0..sn-1), from the kernel."""
    return sum(len(b) for b in get_kernel().iter_run_text(0, sn))


def wait_ready(task_id: str, timeout_s: float = 120) -> None:
    """Long-poll until the task's first byte is 0x00."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        req = urllib.request.Request(f"{BASE}/myapp/fibotask?id={task_id}&wait=10&format=binary")
        with urllib.request.urlopen(req, timeout=60) as resp:
            if resp.read(1) == b"\x00":
                return
    raise SystemExit(f"task {task_id} not ready after {timeout_s} s")


def end_to_end(sn: int, cold: bool) -> float:
    """Seconds from submit to the last byte of the answer."""
    if cold:
        subprocess.run(
            [sys.executable, "-m", "fibod.cli", "cache", "clear"],
            env=ENV,
            check=True,
            capture_output=True,
        )
    start = time.perf_counter()
    task_id = submit(sn)
    code, size, _, _ = curl(f"{BASE}/myapp/fibotask?id={task_id}&wait=30")
    elapsed = time.perf_counter() - start
    if code != 200 or size != 1 + text_bytes(sn):
        raise SystemExit(f"sn={sn}: status {code}, {size} bytes")
    return elapsed


def fetch_workers_peak_rss_mb() -> float:
    """Largest VmHWM among the fetch app's gunicorn processes."""
    out = subprocess.run(["pgrep", "-f", "fibod.fetch:get_app"], capture_output=True, text=True)
    peaks = []
    for pid in out.stdout.split():
        status = Path(f"/proc/{pid}/status")
        if status.exists():
            match = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            if match:
                peaks.append(int(match.group(1)) / 1024)
    return max(peaks, default=float("nan"))


def restart_fetch_app() -> None:
    """Restart the fetch app so its peak RSS covers this benchmark only."""
    conf = ROOT / "supervisord.conf"
    ctl = ROOT / ".venv" / "bin" / "supervisorctl"
    subprocess.run([str(ctl), "-c", str(conf), "restart", "fetch"], check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{BASE}/myapp/tasks/00000000000000000000", timeout=5)
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("fetch app did not come back")


def streaming(sn: int, rounds: int) -> list[str]:
    """Fetch app against nginx static for the same bytes, interleaved."""
    restart_fetch_app()
    task_id = submit(sn)
    wait_ready(task_id)
    static_dir = Path(SETTINGS.state_dir) / "static"
    static_dir.mkdir(parents=True, exist_ok=True)
    static_file = static_dir / f"fibo-{sn}.txt"
    url = f"{BASE}/myapp/fibotask?id={task_id}"
    code, size, _, _ = curl(url, str(static_file))
    if code != 200 or size != 1 + text_bytes(sn):
        raise SystemExit(f"stream of sn={sn}: status {code}, {size} bytes")
    fetch_speed, static_speed = [], []
    for _ in range(rounds):
        fetch_speed.append(curl(url)[3])
        static_speed.append(curl(f"{BASE}/static/{static_file.name}")[3])
    static_file.unlink()
    f, s = statistics.median(fetch_speed), statistics.median(static_speed)
    return [
        f"| stored sn={sn} ({size / 1e9:.2f} GB) via fetch app | {f / 1e9:.2f} GB/s "
        f"({rounds} runs) | nginx static file: {s / 1e9:.2f} GB/s | **{f / s:.0%}** |",
        f"| fetch app peak RSS (largest gunicorn process) | {fetch_workers_peak_rss_mb():.0f} MB "
        "| | |",
    ]


def submissions(seconds: int) -> str:
    """wrk against the submit endpoint; requests/s and p99 latency."""
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
    total = re.search(r"(\d+) requests in", out)
    return (
        f"| submissions, wrk -t2 -c32 -d{seconds}s, sn=100 | {rps.group(1) if rps else '?'} req/s "
        f"| p99 {p99.group(1) if p99 else '?'} | {non2xx.group(1) if non2xx else 0} of "
        f"{total.group(1) if total else '?'} not 202 (rate limit) |"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 5
    rows = ["| what | fibod | reference | ratio |", "|---|---|---|---|"]
    cold = [end_to_end(40_000, cold=True) for _ in range(rounds)]
    warm = [end_to_end(40_000, cold=False) for _ in range(rounds)]
    rows.append(
        f"| sn=40,000 submit to last byte, cold store | {statistics.median(cold):.3f} s "
        f"({rounds} runs) | goal < 1.0 s | |"
    )
    rows.append(
        f"| sn=40,000 submit to last byte, warm store | {statistics.median(warm):.3f} s "
        f"({rounds} runs) | goal < 0.3 s | |"
    )
    rows.extend(streaming(40_000 if quick else 100_000, rounds))
    rows.append(submissions(5 if quick else 10))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
