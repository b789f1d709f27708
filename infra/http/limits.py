"""Limits on what a client may send, and request logging that never carries its content.

- :class:`RateLimiter`: a token bucket per key (a token's id, or a client address for
  requests without a valid token), refilled continuously at ``per_minute``; an empty bucket
  answers 429 with ``Retry-After``. Buckets live in this process: several service processes
  behind one balancer each allow the rate.
- :class:`GuardMiddleware` (pure ASGI, outermost): refuses a body larger than the limit with
  413, by its ``Content-Length`` before reading it, or while reading a chunked one; logs one
  line per request; turns any unexpected exception into a bare 500 (503 with
  ``Retry-After`` when the database is unreachable, restarting or locked).

Log lines name the *route template* (``/vlos/{vlo}/alerts``), never the path, the query or
the body, and an unexpected exception is logged by its type and code location, never its
message: victim references and free text reach no log.
"""

from __future__ import annotations

import json
import math
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("mappa.http")


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """At most ``per_minute`` requests a minute per key, in bursts of up to ``per_minute``."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    MAX_BUCKETS = 10_000

    def take(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0 if allowed, else seconds to wait."""
        rate = self.per_minute / 60.0
        now = self.clock()
        with self._lock:
            if len(self._buckets) >= self.MAX_BUCKETS:
                self._forget_refilled(now, rate)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            bucket.tokens = min(
                float(self.per_minute), bucket.tokens + (now - bucket.updated) * rate
            )
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def _forget_refilled(self, now: float, rate: float) -> None:
        # A bucket that has refilled is the same as no bucket: dropping those keeps memory
        # bounded when many addresses (or guessed tokens) come and go.
        full = float(self.per_minute)
        for key in [
            k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= full
        ]:
            del self._buckets[key]


class TooManyRequests(Exception):
    def __init__(self, retry_after: float, per_minute: int) -> None:
        super().__init__("too many requests")
        self.retry_after = max(1, math.ceil(retry_after))
        self.per_minute = per_minute


class GuardMiddleware:
    """Body size limit, one log line per request, and a scrubbed 500 for any crash."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, Any] = {"status": None, "received": 0}

        async def send_tracked(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            await send(message)

        async def receive_limited() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        try:
            if _declared_length(scope) > self.max_body_bytes:
                await self._too_large(send_tracked)
            else:
                await self.app(scope, receive_limited, send_tracked)
        except _BodyTooLarge:
            if state["status"] is None:
                await self._too_large(send_tracked)
        except Exception as error:
            frames = traceback.extract_tb(error.__traceback__)
            log.error(
                "request failed",
                error_type=type(error).__name__,
                where=[f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames[-6:]],
                route=_route(scope),
            )
            if state["status"] is None and _store_unavailable(error):
                await _send_json(
                    send_tracked,
                    503,
                    {"detail": "the store is unavailable: try again shortly"},
                    [(b"retry-after", b"1")],
                )
            elif state["status"] is None:
                await _send_json(send_tracked, 500, {"detail": "internal error"})
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                route=_route(scope),
                status=state["status"],
                ms=round((time.perf_counter() - started) * 1000, 1),
                token=scope.get("state", {}).get("token_id"),
            )

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, {"detail": too_large_message(self.max_body_bytes)})


def too_large_message(limit: int) -> str:
    return f"request body too large: at most {limit} bytes"


class _BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit. An HTTPException, because the framework
    passes those through its body parsing (anything else there becomes a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def _declared_length(scope: Scope) -> int:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "(unmatched)"


def _store_unavailable(error: Exception) -> bool:
    """A database that cannot be reached, is restarting or is locked: worth a retry."""
    import sqlite3

    import psycopg

    return isinstance(error, sqlite3.OperationalError | psycopg.OperationalError)


async def _send_json(
    send: Send,
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
