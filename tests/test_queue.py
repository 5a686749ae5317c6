"""Queue message format."""

from __future__ import annotations

import json

import pytest

from fibod.queue import KIND_HELP, KIND_TASK, QueueMessage


def test_messages_round_trip_through_json() -> None:
    for kind in (KIND_TASK, KIND_HELP):
        msg = QueueMessage(kind, "0123456789abcdef0123", 40000)
        assert QueueMessage.decode(msg.encode()) == msg


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b"[]",
        b'{"v":2,"kind":"task","id":"x","sn":1}',
        b'{"v":1,"kind":"other","id":"x","sn":1}',
        b'{"v":1,"kind":"task","id":1,"sn":1}',
        b'{"v":1,"kind":"task","id":"x","sn":-1}',
        b'{"v":1,"kind":"task","id":"x","sn":true}',
        b'{"v":1,"kind":"task","id":"x","sn":"5"}',
        None,
    ],
)
def test_malformed_messages_are_refused(raw: bytes | None) -> None:
    with pytest.raises(ValueError):
        QueueMessage.decode(raw)


def test_the_request_id_travels_in_the_message_and_old_messages_still_decode() -> None:
    # given: a message carrying nginx's request id, and one written before it existed
    new = QueueMessage(KIND_TASK, "0123456789abcdef0123", 10, "7ec515e6fa59eb31a4a32b57ffac6b7e")
    old = b'{"v":1,"kind":"task","id":"0123456789abcdef0123","sn":10}'
    # then: the id survives the round trip, the old one decodes without it
    assert QueueMessage.decode(new.encode()) == new
    assert b'"rid":"7ec515e6fa59eb31a4a32b57ffac6b7e"' in new.encode()
    assert QueueMessage.decode(old) == QueueMessage(KIND_TASK, "0123456789abcdef0123", 10)
    assert b"rid" not in QueueMessage(KIND_TASK, "0123456789abcdef0123", 10).encode()
    # a request id that is no string, or far too long, is not trusted as is
    odd = b'{"v":1,"kind":"help","id":"x","sn":1,"rid":5}'
    assert QueueMessage.decode(odd).request_id is None
    long = b'{"v":1,"kind":"help","id":"x","sn":1,"rid":"' + b"a" * 500 + b'"}'
    assert QueueMessage.decode(long).request_id == "a" * 64


def test_the_first_index_travels_and_older_messages_read_as_0() -> None:
    msg = QueueMessage(KIND_TASK, "0" * 32, 10, "rid", start=999_940)
    assert QueueMessage.decode(msg.encode()) == msg
    old = b'{"v":1,"kind":"task","id":"0123456789abcdef0123","sn":10}'
    assert QueueMessage.decode(old).start == 0
    for bad in (-1, "5", True, 1.5):
        raw = json.dumps({"v": 1, "kind": "task", "id": "x", "sn": 1, "start": bad}).encode()
        with pytest.raises(ValueError, match="bad sn or start"):
            QueueMessage.decode(raw)
