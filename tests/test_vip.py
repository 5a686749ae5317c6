"""The VIP sync path as a WSGI app: keys, input, slots, bytes."""

from __future__ import annotations

import falcon.testing
import pytest

from fibod.config import Settings
from fibod.vip import create_app
from tests.reference import reference_text

KEY = "k3y-for-tests"


def client() -> falcon.testing.TestClient:
    """The VIP app with two keys configured, one of them KEY."""
    return falcon.testing.TestClient(create_app(Settings(vip_api_keys=f"other, {KEY}")))


def test_streams_the_sequence_with_a_key_header() -> None:
    resp = client().simulate_get(
        "/myapp/vip/fibo", params={"sn": "300"}, headers={"X-Api-Key": KEY}
    )
    assert resp.status_code == 200
    assert resp.content == b"\x00" + reference_text(0, 300)


def test_bearer_token_and_lines_format() -> None:
    resp = client().simulate_get(
        "/myapp/vip/fibo",
        params={"sn": "5", "format": "lines"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert resp.content == b"\x000\n1\n1\n2\n3\n"


@pytest.mark.parametrize("headers", [{}, {"X-Api-Key": "wrong"}, {"Authorization": "Basic eA=="}])
def test_missing_or_wrong_key_is_401_with_a_challenge(headers: dict[str, str]) -> None:
    resp = client().simulate_get("/myapp/vip/fibo", params={"sn": "5"}, headers=headers)
    assert resp.status_code == 401
    assert "Bearer" in resp.headers["WWW-Authenticate"]
    assert "key" in resp.text


def test_no_configured_key_switches_the_path_off() -> None:
    app = falcon.testing.TestClient(create_app(Settings(vip_api_keys=" , ")))
    resp = app.simulate_get("/myapp/vip/fibo", params={"sn": "5"}, headers={"X-Api-Key": ""})
    assert resp.status_code == 403


@pytest.mark.parametrize(
    "params", [{"sn": "-1"}, {"sn": "1e3"}, {"sn": "200001"}, {}, {"sn": "5", "format": "binary"}]
)
def test_bad_input_is_400(params: dict[str, str]) -> None:
    resp = client().simulate_get("/myapp/vip/fibo", params=params, headers={"X-Api-Key": KEY})
    assert resp.status_code == 400, resp.text


def test_streams_beyond_the_limit_get_503_until_one_closes() -> None:
    # given a process allowed one VIP stream, and a stream held open unread
    app = create_app(Settings(vip_api_keys=KEY, vip_max_streams=1))
    env = falcon.testing.create_environ(
        "/myapp/vip/fibo", query_string="sn=10", headers={"X-Api-Key": KEY}
    )
    statuses: list[str] = []

    def start_response(status: str, _headers: list, _exc: object = None) -> None:
        statuses.append(status)

    held = app(env, start_response)
    # when a second one asks
    refused = b"".join(app(env, start_response))
    # then it is refused with a reason, and the slot comes back on close
    assert statuses[1].startswith("503") and b"busy" in refused
    held.close()
    again = app(env, start_response)
    assert statuses[2].startswith("200")
    assert b"".join(again) == b"\x00" + reference_text(0, 10)
    again.close()
