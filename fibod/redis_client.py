"""Redis connections of both stores and their failure translation.

Every store method runs inside `unavailable_on_error`, so a Redis outage
reaches the web apps as UnavailableError (503), never as a stack trace.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import redis

from fibod.config import Settings
from fibod.errors import StoreAuthError, UnavailableError

P = ParamSpec("P")
R = TypeVar("R")


def connect(url: str, settings: Settings, *, decode: bool) -> redis.Redis:
    """Open a pooled, thread-safe client with bounded timeouts."""
    return redis.Redis.from_url(  # type: ignore[call-overload]  # decode is chosen at run time
        url,
        password=settings.redis_password or None,
        decode_responses=decode,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        socket_keepalive=True,
        health_check_interval=30,
        retry_on_timeout=False,
    )


@contextmanager
def unavailable_on_error(what: str) -> Iterator[None]:
    """Turn any Redis failure into UnavailableError naming the store."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise StoreAuthError(
            f"{what} refused the password ({exc}): check FIBOD_REDIS_PASSWORD, or point "
            "FIBOD_ENV_FILE / --env-file at the stack's settings (var/conf/fibod.env)"
        ) from exc
    except redis.RedisError as exc:
        raise UnavailableError(f"{what} unavailable: {exc}") from exc


def store_call(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a store method so Redis failures become UnavailableError."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with unavailable_on_error(what):
                return func(*args, **kwargs)

        return wrapper

    return decorate
