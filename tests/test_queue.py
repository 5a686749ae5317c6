"""Queue message format."""

from __future__ import annotations

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
