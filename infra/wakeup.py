"""Waking the processes that poll the database as soon as there is something to do.

The relay reads the event store's notification log, and the alert publisher the alerts
table; with nothing to do they wait a moment and look again. On PostgreSQL both tables
announce new rows (the event store NOTIFYs on every insert, the alerts projection whenever
it raises alerts), so a waiting process LISTENs and is woken at the commit instead of up to
a whole wait later: that wait was a large share of an alert's latency.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class PostgresWakeup:
    """``wait(seconds)`` returns at the first NOTIFY on ``channel`` or after ``seconds``."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._conn: Any = None

    def wait(self, seconds: float) -> None:
        import psycopg

        try:
            conn = self._listening()
            for _ in conn.notifies(timeout=seconds, stop_after=1):
                pass
            # Notices of commits already seen are of no further use: drop them, so the next
            # wait waits.
            for _ in conn.notifies(timeout=0.001):
                pass
        except psycopg.Error as error:
            # Without the database there is nothing to do anyway: wait as if polling.
            log.warning("listening for new rows failed", channel=self._channel, error=str(error))
            self.close()
            time.sleep(seconds)

    def _listening(self) -> Any:
        import psycopg
        from psycopg import sql

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=5)
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
