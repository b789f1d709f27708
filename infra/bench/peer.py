"""The peer: the ``eventsourcing`` library's own ``ProjectionRunner`` on the same event store.

A trivial projection counts events into a PostgreSQL view, the way the library's documented
projections do: one transaction per event holding the count and the tracking record. It
reads the same notification log through the library's subscription and deserialises the
same events, so the difference from the tracker's projectors is the batching. It runs for a
fixed time and its rate is extrapolated (it would take an hour over a national history).
"""

from __future__ import annotations

import time
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier

from infra.eventstore import OffenderRecords


class EventCounts(PostgresTrackingRecorder):
    """A materialised view holding one number: the events seen."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.counts = Identifier(self.datastore.schema, f"{self.tracking_table_name}_counts")
        self.sql_create_statements.append(
            SQL("CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, count bigint)").format(
                self.counts
            )
        )

    def increment(self, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self._insert_tracking(cursor, tracking)
            cursor.execute(
                SQL(
                    "INSERT INTO {0} VALUES ('events', 1) ON CONFLICT (name) "
                    "DO UPDATE SET count = {0}.count + 1"
                ).format(self.counts)
            )

    def count(self) -> int:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SELECT count FROM {} WHERE name = 'events'").format(self.counts))
            row = cursor.fetchone()
            return int(row["count"]) if row else 0


class CountingProjection(Projection[EventCounts]):
    name = "benchpeer"

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.increment(tracking)


def peer_rate(env: dict[str, str], seconds: float) -> tuple[float, int]:
    """(events per second, events counted) of the library's runner over ``seconds``."""
    with ProjectionRunner(
        application_class=OffenderRecords,
        projection_class=CountingProjection,
        view_class=EventCounts,
        env=env,
    ) as runner:
        # A retried measurement resumes from the view's tracking position: count from here.
        started, first = time.monotonic(), runner.view.count()
        time.sleep(seconds)
        counted = runner.view.count() - first
        elapsed = time.monotonic() - started
    return counted / elapsed, counted
