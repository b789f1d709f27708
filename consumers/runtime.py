"""What every long-running process shares: graceful shutdown and retrying with backoff."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

import structlog

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Shutdown:
    """Set by SIGTERM or SIGINT: the process finishes its current batch, then stops."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> Shutdown:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        log.info("shutdown requested", signal=signal.Signals(signum).name)
        self._event.set()

    def request(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


class Stopped(Exception):
    """Shutdown was requested before an action succeeded: it did nothing, and its input
    will be delivered again to whoever runs next."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    """The error policy: what a process waits out. A database or broker that is away or
    restarting, a lost connection, a conflicting concurrent write. Anything else (a bug,
    a wrong cipher key, bad configuration) stops the process loudly instead of looping."""
    import sqlite3

    import psycopg
    from eventsourcing import persistence
    from kafka.errors import KafkaError

    return (
        persistence.OperationalError,
        persistence.InterfaceError,
        persistence.IntegrityError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
        sqlite3.OperationalError,
        KafkaError,
        OSError,
    )


def with_retries(
    action: Callable[[], T], shutdown: Shutdown, what: str, max_wait: float = 10.0
) -> T:
    """Run ``action`` until it succeeds, backing off while the database or broker is away;
    raise :class:`Stopped` if shutdown is requested first. Input is never skipped."""
    wait = 0.2
    transient = _transient_errors()
    while True:
        try:
            return action()
        except transient as error:
            log.warning("retrying", action=what, error=repr(error), wait=wait)
            if shutdown.wait(wait):
                raise Stopped(what) from error
            wait = min(wait * 2, max_wait)
