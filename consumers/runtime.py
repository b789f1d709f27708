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


def with_retries(
    action: Callable[[], T], shutdown: Shutdown, what: str, max_wait: float = 10.0
) -> T:
    """Run ``action`` until it succeeds, backing off while the database or broker is away;
    raise :class:`Stopped` if shutdown is requested first."""
    wait = 0.2
    while True:
        try:
            return action()
        except Exception as error:  # the policy: log, back off, retry; never skip input
            log.warning("retrying", action=what, error=repr(error), wait=wait)
            if shutdown.wait(wait):
                raise Stopped(what) from error
            wait = min(wait * 2, max_wait)
