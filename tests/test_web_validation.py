"""The submit app with stub stores: validation, answers, failure paths."""

from __future__ import annotations

import re

import falcon.testing
import pytest

from fibod.config import Settings
from fibod.observe import Observed
from fibod.queue import KIND_TASK
from fibod.tasks import TaskState
from fibod.testing import MemoryTaskStore, RecordingPublisher
from fibod.web import create_app

SETTINGS = Settings(max_sn=200_000, max_from=1_000_000)


@pytest.fixture
def parts() -> tuple[MemoryTaskStore, RecordingPublisher]:
    return MemoryTaskStore(), RecordingPublisher()


@pytest.fixture
def client(parts) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(SETTINGS, *parts))


def test_submit_answers_202_with_id_and_location(client, parts) -> None:
    tasks, publisher = parts
    resp = client.simulate_get("/myapp/fibo", query_string="sn=1000")
    assert resp.status_code == 202
    task_id = resp.text
    assert resp.headers["location"] == f"/myapp/tasks/{task_id}"
    assert resp.headers["content-type"].startswith("text/plain")
    assert tasks.tasks[task_id].state is TaskState.QUEUED
    (message, partition), *_ = publisher.messages
    assert (message.kind, message.task_id, message.sn) == (KIND_TASK, task_id, 1000)
    assert partition is None


@pytest.mark.parametrize(("sn", "state"), [(5, 1), (0, 0)])
def test_submit_json_is_exactly_the_original_task_object(client, parts, sn, state) -> None:
    # given a submit asking for JSON
    resp = client.simulate_get(
        "/myapp/fibo", query_string=f"sn={sn}", headers={"Accept": "application/json"}
    )
    # then the body has the original four fields, of the original types, and no other
    assert resp.status_code == 202
    body = resp.json
    assert list(body) == ["id", "sn", "state", "createTime"]
    assert [type(v) for v in body.values()] == [str, int, int, int]
    assert (body["sn"], body["state"]) == (sn, state)
    assert body["createTime"] == parts[0].tasks[body["id"]].created
    assert resp.headers["location"] == f"/myapp/tasks/{body['id']}"


def test_submit_from_a_queues_the_run_from_a(client, parts) -> None:
    tasks, publisher = parts
    resp = client.simulate_get("/myapp/fibo", query_string="sn=10&from=5000")
    assert resp.status_code == 202
    assert (tasks.tasks[resp.text].sn, tasks.tasks[resp.text].start) == (10, 5000)
    (message, _), *_ = publisher.messages
    assert (message.sn, message.start) == (10, 5000)


@pytest.mark.parametrize(
    "query", ["from=", "from=-1", "from=1.5", "from=x", "from=1000001", "from=1&from=2"]
)
def test_bad_from_is_400_naming_it(client, parts, query: str) -> None:
    resp = client.simulate_get("/myapp/fibo", query_string=f"sn=5&{query}")
    assert resp.status_code == 400
    assert "from" in resp.text
    assert parts[0].tasks == {}


def test_sn_zero_is_ready_without_queueing(client, parts) -> None:
    tasks, publisher = parts
    resp = client.simulate_get("/myapp/fibo", query_string="sn=0")
    assert resp.status_code == 202
    assert tasks.tasks[resp.text].state is TaskState.READY
    assert publisher.messages == []


@pytest.mark.parametrize(
    "query",
    [
        "",
        "sn=",
        "sn=-1",
        "sn=1.5",
        "sn=200001",
        "sn=99999999999999999999999999",
        "sn=1&sn=2",
        "sn=%D9%A3",  # ARABIC-INDIC DIGIT THREE
        "sn=%EF%BC%91",  # FULLWIDTH DIGIT ONE
        "sn=%20%31",
        "sn=%ff",
        "n=5",
    ],
)
def test_bad_sn_is_400_with_reason(client, parts, query: str) -> None:
    resp = client.simulate_get("/myapp/fibo", query_string=query)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("text/plain")
    assert "sn" in resp.text or "UTF-8" in resp.text
    assert parts[0].tasks == {}


def test_kafka_down_is_503_and_leaves_no_task(client, parts) -> None:
    tasks, publisher = parts
    publisher.down = True
    resp = client.simulate_get("/myapp/fibo", query_string="sn=10")
    assert resp.status_code == 503
    assert "Retry-After" in resp.headers
    assert "queue" in resp.text
    assert tasks.tasks == {}


def test_task_store_down_is_503(client, parts) -> None:
    parts[0].down = True
    resp = client.simulate_get("/myapp/fibo", query_string="sn=10")
    assert resp.status_code == 503
    assert "task store" in resp.text


def test_openapi_is_served(client) -> None:
    resp = client.simulate_get("/openapi.yaml")
    assert resp.status_code == 200
    assert "/myapp/fibotask" in resp.text


def test_openapi_document_describes_every_route() -> None:
    import yaml

    from fibod.openapi import openapi_yaml

    spec = yaml.safe_load(openapi_yaml())
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {
        "/myapp/fibo",
        "/myapp/fibotask",
        "/myapp/fibotask/id={id}",
        "/myapp/tasks/{id}",
        "/myapp/tasks",
        "/myapp/vip/fibo",
        "/openapi.yaml",
        "/metrics",
        "/healthz",
        "/readyz",
        "/myapp/monitor/overview",
        "/myapp/monitor/tasks",
    }
    # every $ref points at a component that exists
    text = openapi_yaml()
    for ref in set(re.findall(r'"#/components/(\w+)/(\w+)"', text)):
        assert ref[1] in spec["components"][ref[0]], ref


def test_the_queued_message_carries_the_request_id_of_the_submit(parts) -> None:
    # given: the submit app wrapped as gunicorn runs it, nginx's id in the header
    tasks, publisher = parts
    app = Observed(create_app(SETTINGS, tasks, publisher), "submit")
    client = falcon.testing.TestClient(app)
    # when
    resp = client.simulate_get(
        "/myapp/fibo", query_string="sn=10", headers={"X-Request-ID": "abc123"}
    )
    # then
    assert resp.status_code == 202
    (message, _partition), *_ = publisher.messages
    assert message.request_id == "abc123"
