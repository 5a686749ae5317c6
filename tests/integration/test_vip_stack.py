"""The VIP sync path through nginx, on its own gunicorn processes."""

from __future__ import annotations

import pytest

from fibod.protocol import VIP_PATH
from tests.reference import reference_text

pytestmark = pytest.mark.integration


def test_vip_streams_the_sequence_to_a_key_holder(stack, http) -> None:
    # given the API key `make up` generated into the configuration
    key = stack.env["FIBOD_VIP_API_KEYS"].split(",")[0].strip()
    # when a key holder asks, with no task and no waiting
    resp = http.get_path(VIP_PATH, params={"sn": 3000}, headers={"X-Api-Key": key})
    # then the answer is the ready body of a fetch, byte for byte
    assert resp.status_code == 200
    assert resp.content == b"\x00" + reference_text(0, 3000)


def test_vip_refuses_requests_without_a_valid_key(http) -> None:
    for headers in ({}, {"X-Api-Key": "not-the-key"}):
        resp = http.get_path(VIP_PATH, params={"sn": 10}, headers=headers, timeout=10)
        assert resp.status_code == 401
        assert "key" in resp.text
