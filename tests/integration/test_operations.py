"""Operations on the real stack: metrics, health and readiness, request ids, logs.

Every figure is checked against what really happened (a task submitted
and streamed, workers stopped, a store stopped) or against its source
(Redis INFO, the task topic), and every scrape passes `promtool check
metrics`.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import redis
import requests
from health import app_ports

from fibod import planner
from fibod.config import Settings
from fibod.protocol import task_links
from fibod.queue import KIND_TASK, QueueMessage, TaskPublisher
from fibod.segments import SegmentLayout
from fibod.tasks import TaskState, TaskStore
from tests.integration.clients import Client
from tests.integration.faults import own_topic
from tests.integration.stack import (
    ROOT,
    VAR,
    Stack,
    Supervisor,
    start_worker,
    stop_worker,
    wait_for,
)
from tests.prom import Key, parse, total, value

#: A task of many segments (about 22 of 2 MB), quick to compute.
SN = 30_000


def scrape(url: str) -> tuple[str, dict[Key, float]]:
    """GET a /metrics; check it with promtool; return the text and its samples."""
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=resp.text, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return resp.text, parse(resp.text)


def own_url(settings: Settings, port: int, path: str) -> str:
    return f"http://{settings.listen_address}:{port}{path}"


@pytest.mark.usefixtures("streamed_by_the_app")
def test_the_entry_metrics_cover_the_whole_stack(
    stack: Stack,
    http: Client,
    settings: Settings,
    layout: SegmentLayout,
    sequence_redis: redis.Redis,
) -> None:
    # given: the stack's figures before
    _, before = scrape(stack.base_url + "/metrics")
    # when: a task is submitted, computed and streamed whole
    task_id = http.submit(SN)
    assert http.wait_ready(task_id, 60)["state"] == "ready"
    streamed = http.stream_digest(task_id)
    assert streamed.status == 200

    def settled() -> dict[Key, float] | None:
        # both byte tallies land just after a stream, the store's first
        # (the body's close), then the app's (the request's end): wait for both
        _, now = scrape(stack.base_url + "/metrics")
        tallies = (
            value(now, "fibod_bytes_streamed_total") - value(before, "fibod_bytes_streamed_total"),
            total(now, "fibod_http_response_bytes_total", app="fetch", route="fetch")
            - total(before, "fibod_http_response_bytes_total", app="fetch", route="fetch"),
        )
        return now if min(tallies) >= streamed.size else None

    after = wait_for(settled, 10, "the streamed bytes counted")

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    # then: tasks, segments and bytes moved by exactly this task's figures
    assert delta("fibod_tasks_finished_total", state="ready") == 1
    js = planner.task_segments(layout, SN)  # each computed (once stored) or found stored
    outcomes = ("computed", "reused")
    assert sum(delta("fibod_segments_total", outcome=o) for o in outcomes) == len(js)
    assert delta("fibod_bytes_streamed_total") == streamed.size
    # every app's requests, latency and bytes, merged from all their processes
    assert delta("fibod_http_requests_total", app="submit", route="submit", code="202") == 1
    assert delta("fibod_http_request_duration_seconds_count", app="submit", route="submit") == 1
    assert delta("fibod_http_response_bytes_total", app="fetch", route="fetch") >= streamed.size
    assert delta("fibod_http_request_duration_seconds_count", app="fetch", route="status") >= 1
    # the queue: one message more on the task topic, nothing left behind
    partitions = {str(p) for p in range(settings.task_partitions)}
    lags = {dict(labels)["partition"] for (n, labels) in after if n == "fibod_queue_lag"}
    assert lags == partitions
    assert delta("fibod_queue_end_offset") >= 1
    assert total(after, "fibod_tasks", state="queued") == 0
    # the stores, as their own INFO says
    info = sequence_redis.info()
    seq = {"store": "sequence", "node": f"{settings.listen_address}:{info['tcp_port']}"}
    assert value(after, "fibod_store_maxmemory_bytes", **seq) == info["maxmemory"]
    assert value(after, "fibod_store_evicted_keys_total", **seq) == info["evicted_keys"]
    assert value(after, "fibod_store_used_memory_bytes", **seq) > 0
    assert total(after, "fibod_store_used_memory_bytes", store="task") > 0
    # the workers: all alive, holding every partition between them
    workers = int(settings.workers)
    assert (
        total(after, "fibod_workers", state="idle") + total(after, "fibod_workers", state="busy")
        == workers
    )
    assert total(after, "fibod_worker_assigned_partitions") == settings.task_partitions
    parts = ("task store", "sequence store", "kafka")
    assert {value(after, "fibod_up", part=p) for p in parts} == {1}


def test_each_app_and_worker_answers_metrics_health_and_readiness_on_its_own_port(
    stack: Stack, settings: Settings
) -> None:
    for name, port in app_ports(settings).items():
        # then: each scrape holds that program's metrics only
        _, samples = scrape(own_url(settings, port, "/metrics"))
        apps = {dict(labels).get("app") for (n, labels) in samples if n.startswith("fibod_http")}
        owners = {dict(labels).get("worker") for (n, labels) in samples if "fibod_worker" in n}
        if name.startswith("worker-"):
            assert owners == {name}, owners
            assert value(samples, "fibod_worker_assigned_partitions", worker=name) >= 1
        elif name == "monitor":  # the entry URL's view: every program of this host
            assert {"submit", "fetch"} <= apps
        else:
            assert apps <= {name} and not owners, (apps, owners)
        for path in ("/healthz", "/readyz"):
            resp = requests.get(own_url(settings, port, path), timeout=10)
            assert resp.status_code == 200, f"{name} {path}: {resp.text}"
            assert resp.headers["Content-Type"].startswith("text/plain")


def test_queued_tasks_show_with_their_age_and_lag_then_run_at_once_when_workers_are_ready(
    stack: Stack, http: Client, settings: Settings, supervisor: Supervisor
) -> None:
    try:
        # given: no worker running
        supervisor.stop("worker:*")
        # (help messages of earlier tasks, left when their task was done, may lag already)
        _, idle = scrape(stack.base_url + "/metrics")
        lag_before = total(idle, "fibod_queue_lag")
        # when: two tasks are submitted and wait
        waiting = [http.submit(20), http.submit(21)]
        time.sleep(1.5)
        # then: the entry's metrics and the dashboard's JSON show them queued, aged, lagging
        _, samples = scrape(stack.base_url + "/metrics")
        assert value(samples, "fibod_tasks", state="queued") == 2
        assert value(samples, "fibod_task_oldest_age_seconds", state="queued") >= 1.5
        assert total(samples, "fibod_queue_lag") == lag_before + 2
        assert total(samples, "fibod_workers") == 0
        overview = http.get_path("/myapp/monitor/overview").json()
        assert overview["tasks"]["counts"] == {"queued": 2, "running": 0}
        assert overview["queue"]["lag"] == lag_before + 2 and overview["workers"] == []
        page = http.get_path("/myapp/monitor/tasks", params={"limit": "1"}).json()
        assert [t["id"] for t in page["tasks"]] == waiting[1:]
        assert page["tasks"][0]["state"] == "queued"
        older = http.get_path(
            "/myapp/monitor/tasks", params={"limit": "1", "before": str(page["next"])}
        ).json()
        assert [t["id"] for t in older["tasks"]] == waiting[:1]
        # the entry stays ready: tasks are accepted, they wait for workers
        assert http.get_path("/readyz").status_code == 200
        # when: the workers start and the stack is ready again, as `make up` waits for it
        supervisor.start("worker:*")
        ready = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "scripts/health.py", "ready", "--wait-s", "90"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert ready.returncode == 0, ready.stdout + ready.stderr
        # then: the waiting tasks finish and a new one is not left queued
        for task_id in waiting:
            assert http.wait_ready(task_id, 30)["state"] == "ready"
        started = time.monotonic()
        assert http.wait_ready(http.submit(12), 10)["state"] == "ready"
        assert time.monotonic() - started < 2.0
        _, samples = scrape(stack.base_url + "/metrics")
        assert value(samples, "fibod_tasks", state="queued") == 0
        # offsets are committed within FIBOD_WORKER_COMMIT_INTERVAL_MS of a unit's end
        wait_for(
            lambda: total(scrape(stack.base_url + "/metrics")[1], "fibod_queue_lag") == 0,
            5,
            "the queue's lag back to 0",
        )
    finally:
        supervisor.restore()


def test_readyz_names_a_store_that_does_not_answer(
    stack: Stack, http: Client, settings: Settings, supervisor: Supervisor
) -> None:
    ports = app_ports(settings)
    try:
        # given: the sequence store stopped
        supervisor.stop("sequence-redis")
        # then: the entry is alive but not ready, and says why in one line
        resp = http.get_path("/readyz")
        assert resp.status_code == 503
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert resp.text.startswith("not ready: sequence store") and resp.text.count("\n") == 1
        assert http.get_path("/healthz").status_code == 200
        # a worker cannot compute without it; a fetch still streams, computing instead
        worker = requests.get(own_url(settings, ports["worker-0"], "/readyz"), timeout=10)
        assert worker.status_code == 503 and "sequence store" in worker.text
        fetch = requests.get(own_url(settings, ports["fetch"], "/readyz"), timeout=10)
        assert fetch.status_code == 200
        # the metrics say it is down, and give none of its figures
        _, samples = scrape(stack.base_url + "/metrics")
        assert value(samples, "fibod_up", part="sequence store") == 0
        assert total(samples, "fibod_store_used_memory_bytes", store="sequence") == 0
        assert value(samples, "fibod_up", part="task store") == 1
        # and the health script names it too
        check = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "scripts/health.py", "ready"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert check.returncode == 1 and "sequence store" in check.stdout
    finally:
        supervisor.restore()
    wait_for(lambda: http.get_path("/readyz").status_code == 200, 30, "entry ready again")


def test_one_request_id_finds_the_whole_story_of_a_task(stack: Stack, http: Client) -> None:
    # when: a task is submitted; nginx tells the client its request id
    resp = http.get_path("/myapp/fibo", params={"sn": "2500"})
    assert resp.status_code == 202
    task_id, request_id = resp.text, resp.headers["X-Request-ID"]
    assert len(request_id) == 32
    assert http.wait_ready(task_id, 30)["state"] == "ready"

    # then: nginx's access log and the worker that ran it both name it with the task
    def story() -> dict[str, list[str]] | None:
        found = {
            log.name: [line for line in log.read_text().splitlines() if request_id in line]
            for log in (VAR / "log").glob("*.log")
        }
        found = {name: lines for name, lines in found.items() if lines}
        workers = [name for name in found if name.startswith("worker-")]
        return found if "nginx-access.log" in found and workers else None

    found = wait_for(story, 10, f"request {request_id} in every log")
    # the submit's access line carries the answer's Location: the task's status URL
    assert any(f"loc={task_links(task_id)['status_url']}" in x for x in found["nginx-access.log"])
    worker_lines = [line for name, lines in found.items() if "worker" in name for line in lines]
    assert any(f"task {task_id} ready" in line for line in worker_lines)


def test_a_worker_asked_for_json_writes_one_json_object_per_line(
    stack: Stack, settings: Settings
) -> None:
    with own_topic(settings, "json", partitions=1) as (topic, group):
        # given: a worker of its own topic and group, FIBOD_LOG_FORMAT=json
        port = settings.worker_metrics_port + 40
        env = {
            "FIBOD_TASK_TOPIC": topic,
            "FIBOD_TASK_PARTITIONS": "1",
            "FIBOD_WORKER_GROUP": group,
            "FIBOD_LOG_FORMAT": "json",
            "FIBOD_WORKER_METRICS_PORT": str(port),
        }
        worker = start_worker(stack, env)
        on_topic = Settings.from_env(stack.env | env)
        tasks = TaskStore.from_settings(on_topic)
        publisher = TaskPublisher.from_settings(on_topic, "fibod-test-json")
        try:
            # when: a task with a request id is queued to it
            wait_for(
                lambda: requests.get(f"http://{settings.listen_address}:{port}/readyz").ok,
                30,
                "the json worker ready",
            )
            task = tasks.create(300)
            publisher.publish(QueueMessage(KIND_TASK, task.id, task.sn, "json-test-rid"))
            wait_for(
                lambda: (t := tasks.get(task.id)) is not None and t.state is TaskState.READY,
                30,
                "the task ready",
            )
        finally:
            publisher.close()
            out = stop_worker(worker)
    # then: every line is one JSON object with time, process, level; the task's carry the ids
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and all({"time", "process", "pid", "level", "message"} <= set(x) for x in lines)
    ready = [x for x in lines if x["message"].startswith(f"task {task.id} ready")]
    assert ready and ready[0]["request_id"] == "json-test-rid"
    assert ready[0]["task_id"] == task.id


def test_rotating_the_logs_keeps_every_program_writing(stack: Stack, http: Client) -> None:
    log_dir = VAR / "log"
    # when: the hourly rotation runs, forced
    rotated = subprocess.run(
        ["bash", "scripts/rotate_logs.sh", "-f"], cwd=ROOT, capture_output=True, text=True
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    # then: nginx's and Redis's logs moved aside and start again empty ...
    for name in ("nginx-access.log", "task-redis.log", "sequence-redis.log"):
        assert (log_dir / f"{name}.1").exists() or (log_dir / f"{name}.2.gz").exists(), name
    assert Path(log_dir / "task-redis.log").stat().st_size < 4096
    # ... and nginx writes its new lines to the new file (it reopened it)
    request_id = http.get_path("/healthz").headers["X-Request-ID"]
    wait_for(
        lambda: request_id in (log_dir / "nginx-access.log").read_text(),
        10,
        "nginx writing to the new access log",
    )
    assert http.submit(15)
