"""The operator routes every process answers, and the measurement of requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import falcon.testing
import pytest
from prometheus_client import REGISTRY

from fibod import logs
from fibod.observe import Observed, route_name


def sample(name: str, **labels: str) -> float:
    """Read one sample of this process's metrics (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Body:
    """A streamed body that remembers whether it was closed and the log context it ran in."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = 0
        self.request_ids: list[str | None] = []

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.request_ids.append(logs.request_id.get())
            yield chunk

    def close(self) -> None:
        self.closed += 1


def streaming_app(body: Body) -> Any:
    def app(_environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return app


def call(app: Observed, path: str, **environ: str) -> tuple[str, Any]:
    status: list[str] = []
    env = {"PATH_INFO": path, "QUERY_STRING": "", "REQUEST_METHOD": "GET"} | environ
    result = app(env, lambda s, _h, _e=None: status.append(s))
    return status[0] if status else "", result


def test_a_stream_is_measured_until_it_ends_with_its_request_id() -> None:
    # given: an app streaming 3 chunks, wrapped
    body = Body([b"\x00", b"a" * 1000, b"b" * 24])
    app = Observed(streaming_app(body), "unit-a")
    before = sample("fibod_http_request_duration_seconds_count", app="unit-a", route="fetch")
    # when: it is requested, sent whole and closed, as a WSGI server does
    status, result = call(app, "/myapp/fibotask", HTTP_X_REQUEST_ID="rid-7")
    sent = b"".join(result)
    assert sample("fibod_http_requests_in_flight", app="unit-a") == 1
    result.close()
    # then: counted once, with every byte sent, in the request's log context
    assert status == "200 OK" and len(sent) == 1025
    assert sample("fibod_http_response_bytes_total", app="unit-a", route="fetch") == 1025
    assert sample("fibod_http_requests_total", app="unit-a", route="fetch", code="200") == 1
    after = sample("fibod_http_request_duration_seconds_count", app="unit-a", route="fetch")
    assert after == before + 1
    assert sample("fibod_http_requests_in_flight", app="unit-a") == 0
    assert body.closed == 1 and body.request_ids == ["rid-7"] * 3
    assert logs.request_id.get() is None
    result.close()  # a second close reports nothing twice
    assert sample("fibod_http_requests_total", app="unit-a", route="fetch", code="200") == 1


def test_a_client_that_leaves_early_counts_only_what_it_was_sent() -> None:
    body = Body([b"x" * 10, b"y" * 10, b"z" * 10])
    app = Observed(streaming_app(body), "unit-b")
    _status, result = call(app, "/myapp/fibotask/id=0123456789abcdef0123")
    next(iter(result))
    result.close()
    assert sample("fibod_http_response_bytes_total", app="unit-b", route="fetch") == 10
    assert body.closed == 1


def test_an_app_that_raises_counts_a_500() -> None:
    def broken(_environ: dict[str, Any], _start_response: Any) -> list[bytes]:
        raise RuntimeError("bug")

    app = Observed(broken, "unit-c")
    with pytest.raises(RuntimeError):
        call(app, "/myapp/fibo")
    assert sample("fibod_http_requests_total", app="unit-c", route="submit", code="500") == 1
    assert sample("fibod_http_requests_in_flight", app="unit-c") == 0


def test_readyz_names_each_part_that_does_not_answer() -> None:
    reasons: list[str] = ["task store unavailable: refused", "kafka unavailable: timed out"]
    client = falcon.testing.TestClient(Observed(None, "unit-d", lambda: list(reasons)))
    resp = client.simulate_get("/readyz")
    assert resp.status_code == 503
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == (
        "not ready: task store unavailable: refused; kafka unavailable: timed out\n"
    )
    reasons.clear()
    assert client.simulate_get("/readyz").text == "ready: unit-d\n"
    assert client.simulate_get("/healthz").status_code == 200
    assert client.simulate_get("/elsewhere").status_code == 404


def test_metrics_answers_the_prometheus_text_format() -> None:
    client = falcon.testing.TestClient(Observed(None, "unit-e"))
    resp = client.simulate_get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE fibod_http_requests_total counter" in resp.text


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/myapp/fibo", "submit"),
        ("/myapp/fibotask", "fetch"),
        ("/myapp/fibotask/id=0123456789abcdef0123&wait=5", "fetch"),
        ("/myapp/tasks/0123456789abcdef0123", "status"),
        ("/myapp/vip/fibo", "vip"),
        ("/openapi.yaml", "openapi"),
        ("/myapp/monitor/overview", "monitor"),
        ("/myapp/fibox", "other"),
        ("/../../etc/passwd", "other"),
    ],
)
def test_routes_are_named_from_a_fixed_set(path: str, route: str) -> None:
    assert route_name(path) == route
