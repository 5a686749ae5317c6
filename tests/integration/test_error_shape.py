"""Every error has one shape, whoever makes it: one line of text/plain saying why."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest


def _raw(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes to nginx; parse the status, headers and body it answers."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _get(path: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: fibod\r\nConnection: close\r\n{extra}\r\n".encode()


CASES = {
    "TRACE, refused by nginx": (_get("/myapp/fibo?sn=3", "TRACE"), 405),
    "DELETE, refused by the app": (_get("/myapp/fibo?sn=3", "DELETE"), 405),
    "a path that is no route (nginx)": (_get("/nowhere"), 404),
    "a path no app route takes (the app)": (_get("/myapp/tasks/x/y"), 404),
    "a bad sn (the app)": (_get("/myapp/fibo?sn=-1"), 400),
    "a malformed id (the app)": (_get("/myapp/fibotask?id=xyz"), 400),
    "a body on a GET (nginx)": (_get("/myapp/fibo?sn=3", extra="Content-Length: 4096\r\n"), 413),
    "a request line too long (nginx)": (_get("/myapp/fibo?sn=" + "1" * 20_000), 414),
    "a header nginx cannot parse": (b"GET / HTTP/1.1\r\nHost fibod\r\n\r\n", 400),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_error_is_one_line_of_plain_text(stack, case: str) -> None:
    request, status = CASES[case]
    got, headers, body = _raw(stack.base_url, request)
    assert got == status, (case, body[:200])
    assert headers["content-type"] == "text/plain; charset=utf-8", (case, headers)
    text = body.decode()
    assert text.endswith("\n") and text.count("\n") == 1 and len(text) > 5, (case, text)
    if status == 405:
        assert "GET" in headers["allow"], headers
