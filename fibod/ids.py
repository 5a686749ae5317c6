"""Task ids: their format, their creation time, and whether fibod issued them.

An id is 32 lowercase hex digits: 12 of creation time (ms since the
epoch), 8 random, then 12 of a MAC (HMAC-SHA256 of the first 20, keyed
by FIBOD_ID_SECRET, truncated). The time lets an absent task be told
"expired" from "unknown"; the MAC makes that answer honest, since an id
that merely looks right (a typo, a guess, a fuzzer's) fails it and is
"unknown" whatever its time. Clients treat the id as an opaque string.

Ids of 20 hex digits (time and random, no MAC) were issued before; they
are still served while their task lives, but can never be shown genuine,
so once absent they are unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fibod.errors import InputError

#: Hex digits of each part of an id.
TIME_DIGITS = 12
RANDOM_DIGITS = 8
MAC_DIGITS = 12
#: Length of an id without its MAC (also the whole of a legacy id).
BODY_DIGITS = TIME_DIGITS + RANDOM_DIGITS
ID_DIGITS = BODY_DIGITS + MAC_DIGITS
#: An id as accepted on every route: a current id or a legacy one.
TASK_ID_RE = re.compile(rf"[0-9a-f]{{{BODY_DIGITS}}}(?:[0-9a-f]{{{MAC_DIGITS}}})?")


def _mac(body: str, key: bytes) -> str:
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).hexdigest()[:MAC_DIGITS]


def new_task_id(created_ms: int, key: bytes) -> str:
    """Make an id that embeds its creation time and a MAC over both."""
    body = f"{created_ms:0{TIME_DIGITS}x}{secrets.token_hex(RANDOM_DIGITS // 2)}"
    return body + _mac(body, key)


def parse_task_id(text: str, what: str = "task id") -> str:
    """Accept a well-formed id (32 or, legacy, 20 lowercase hex digits)."""
    if not TASK_ID_RE.fullmatch(text):
        raise InputError(
            f"malformed {what} {text[:40]!r}: expected {ID_DIGITS} lowercase hex digits"
        )
    return text


def id_created_ms(task_id: str) -> int:
    """Return the creation time embedded in a well-formed id."""
    return int(task_id[:TIME_DIGITS], 16)


def is_genuine(task_id: str, key: bytes) -> bool:
    """Tell whether fibod (holding `key`) issued this well-formed id."""
    if len(task_id) != ID_DIGITS:
        return False  # a legacy id carries no MAC to check
    body = task_id[:BODY_DIGITS]
    return hmac.compare_digest(task_id[BODY_DIGITS:], _mac(body, key))


def id_key(secret: str) -> bytes:
    """Return the MAC key of a FIBOD_ID_SECRET value."""
    return secret.encode("ascii")
