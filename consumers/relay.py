"""The relay (transactional outbox): every stored event, in order, onto the events topic.

The event store's notification log is the outbox: events are committed there with the
facts, so nothing is published that was not stored, and nothing stored is left unpublished.
The relay publishes a batch with the idempotent producer (acks=all), waits until the broker
has every message, and only then stores its position. A crash in between publishes that
batch again after restart; projectors skip the repeats by stream version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from consumers.runtime import Shutdown, Stopped, with_retries
from consumers.wire import encode_stored
from infra.eventstore import OffenderRecords
from projections.base import create_common_tables, read_position, write_position
from projections.ports import ViewDatabase

log = structlog.get_logger(__name__)

RELAY = "relay"
UPSTREAM = "offenders"


class Relay:
    def __init__(
        self,
        records: OffenderRecords,
        views: ViewDatabase,
        producer: Any,
        topic: str,
        batch_size: int = 1000,
        wakeup: Callable[[float], object] | None = None,
    ) -> None:
        self.records = records
        # Waits when there is nothing to publish; by default a plain sleep (see infra.wakeup).
        self.wakeup = wakeup
        self.views = views
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        with views.transaction() as tx:
            create_common_tables(tx)

    def position(self) -> int:
        with self.views.transaction() as tx:
            return read_position(tx, RELAY, UPSTREAM)

    def relay_once(self) -> int:
        """Publish the next batch of stored events; return how many were published."""
        position = self.position()
        notifications = self.records.recorder.select_notifications(
            start=position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        futures = []
        mapper = self.records.mapper
        for notification in notifications:
            futures.append(
                self.producer.send(
                    self.topic,
                    key=str(notification.originator_id).encode(),
                    value=encode_stored(notification, mapper),
                )
            )
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker did not take a message
        with self.views.transaction() as tx:
            write_position(tx, RELAY, UPSTREAM, notifications[-1].id)
        return len(notifications)

    def run(self, shutdown: Shutdown, idle_wait: float = 0.2) -> None:
        log.info("relay started", topic=self.topic, position=self.position())
        try:
            while not shutdown.requested:
                published = with_retries(self.relay_once, shutdown, "relay")
                if published:
                    log.debug("relayed", events=published)
                else:
                    (self.wakeup or shutdown.wait)(idle_wait)
        except Stopped:
            pass  # the position was not moved: the batch will be published again
        finally:
            self.producer.close()
        log.info("relay stopped")
