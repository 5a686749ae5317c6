"""HTTP validators and byte ranges of ready results (RFC 9110 sections 8, 13, 14).

A ready body depends only on (sn, start, format), plus the segment size
for `format=binary`, so its strong ETag is made from them: every fetch
host gives the same one, before reading a byte. Only single ranges are
served; a header this module cannot use whole (another unit, several
ranges, bad syntax) is ignored, as the RFC allows, and the whole body
is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from fibod.errors import RangeNotSatisfiableError

#: Version of the rendering in every ETag: bump it if the bytes ever change.
ETAG_VERSION = "v1"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
#: Single ranges nginx's range filter reads exactly as parse_range does.
_PLAIN_RANGE = re.compile(r"bytes=([0-9]{1,18}-[0-9]{0,18}|-[1-9][0-9]{0,17})")


@dataclass(frozen=True)
class ByteRange:
    """Bytes first..last of a body, both inclusive."""

    first: int
    last: int

    @property
    def size(self) -> int:
        """Bytes in the range."""
        return self.last - self.first + 1

    def content_range(self, length: int) -> str:
        """Return the Content-Range value of a 206 answer."""
        return f"bytes {self.first}-{self.last}/{length}"


def result_etag(fmt: str, start: int, sn: int, segment_bytes: int) -> str:
    """Return the strong ETag of a ready body (quoted)."""
    layout = f"-{segment_bytes}" if fmt == "binary" else ""
    return f'"{ETAG_VERSION}-{fmt}{layout}-{start}-{sn}"'


def http_date(ms: int) -> str:
    """Format ms since the epoch as an HTTP-date."""
    return format_datetime(datetime.fromtimestamp(ms // 1000, UTC), usegmt=True)


def none_match(header: str | None, etag: str) -> bool:
    """Tell whether If-None-Match holds our ETag (weak comparison), or is *."""
    if header is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def if_range_allows(header: str | None, etag: str, last_modified_ms: int | None) -> bool:
    """Tell whether a Range may be served under If-Range (absent: yes).

    An entity tag must match strongly; a date must equal Last-Modified.
    """
    if header is None:
        return True
    value = header.strip()
    if value.startswith('"'):
        return value == etag
    if value.startswith("W/") or last_modified_ms is None:
        return False
    try:
        sent = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return sent.tzinfo is not None and int(sent.timestamp()) == last_modified_ms // 1000


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """Return the one range asked for, None to send the whole body.

    Raises RangeNotSatisfiableError when the range starts past the end
    (or asks for an empty suffix).
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None or not (match[1] or match[2]):
        return None  # another unit, several ranges, or malformed: ignored
    first_text, last_text = match[1], match[2]
    if not first_text:  # bytes=-N: the last N bytes
        suffix = int(last_text[:20])  # a longer one asks for everything anyway
        if suffix == 0:
            raise RangeNotSatisfiableError(length, "an empty suffix range")
        return ByteRange(max(length - suffix, 0), length - 1)
    first = int(first_text) if len(first_text) <= 20 else length
    last = int(last_text) if last_text and len(last_text) <= 20 else None
    if last is not None and last < first:
        return None  # invalid: ignored
    if first >= length:
        raise RangeNotSatisfiableError(length, f"range starts at byte {first_text[:20]}")
    return ByteRange(first, length - 1 if last is None else min(last, length - 1))


def nginx_parses_alike(header: str) -> bool:
    """Tell whether nginx reads this Range header as parse_range does.

    Only a plain single range qualifies: no spaces, no other case, no
    number long enough to overflow, no empty suffix.
    """
    return _PLAIN_RANGE.fullmatch(header.strip()) is not None
