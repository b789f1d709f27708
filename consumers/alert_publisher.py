"""Publishes raised victim alerts to ``mappa.victim-alerts.v1``, exactly once each.

The alerts table is the outbox: every alert has a sequence number, committed in order. The
publisher sends the alerts after the last one it published inside a Kafka *transaction*
and, on start, learns where it got to from the topic itself: the highest sequence number
among the committed messages. A crash mid-transaction leaves the transaction aborted
(``init_transactions`` fences the old producer), so read-committed consumers see each alert
once, and the restarted publisher sends again exactly what was not committed.

Messages are keyed by recipient (a VLO, or ``coordinator:<area>``): one recipient's alerts
stay in one partition, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import structlog
from kafka import TopicPartition

from consumers.runtime import Shutdown, Stopped, with_retries
from projections.ports import ViewDatabase
from projections.victim_alerts.projection import RaisedAlert, alerts_after

log = structlog.get_logger(__name__)


def alert_message(sequence: int, raised: RaisedAlert) -> bytes:
    return json.dumps({"sequence": sequence, **raised.to_json()}, separators=(",", ":")).encode()


def last_published_sequence(consumer: Any, topic: str) -> int:
    """The highest ``sequence`` among the committed messages of ``topic`` (0 if none).

    Sequence numbers are sent in order, so each partition's last committed message holds
    that partition's highest. Transaction markers occupy offsets too, so look back a
    growing window from the end until a message is found.
    """
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    starts = consumer.beginning_offsets(partitions)
    highest = 0
    for partition in partitions:
        end, start = ends[partition], starts[partition]
        window = 16
        while end > start:
            consumer.seek(partition, max(start, end - window))
            found = _read_until(consumer, partition, end)
            if found:
                highest = max(highest, max(json.loads(m.value)["sequence"] for m in found))
                break
            if end - window <= start:
                break
            window *= 4
    consumer.unsubscribe()
    return highest


def _read_until(consumer: Any, partition: TopicPartition, end: int) -> list[Any]:
    messages: list[Any] = []
    for _ in range(100):
        polled = consumer.poll(timeout_ms=200)
        messages.extend(polled.get(partition, []))
        if consumer.position(partition) >= end:
            break
    return messages


class AlertPublisher:
    def __init__(
        self,
        views: ViewDatabase,
        producer_factory: Callable[[], Any],
        tail_reader: Any,
        topic: str,
        batch_size: int = 500,
        wakeup: Callable[[float], object] | None = None,
    ) -> None:
        self.views = views
        # Waits when there is nothing to publish; by default a plain sleep (see infra.wakeup).
        self.wakeup = wakeup
        self.producer_factory = producer_factory
        self.producer: Any = None
        self.tail_reader = tail_reader
        self.topic = topic
        self.batch_size = batch_size
        self.published = 0

    def start(self) -> None:
        """(Re)start: a new transactional producer fences any earlier one, then resume
        after the last alert the topic holds."""
        if self.producer is not None:
            self.producer.close()
        self.producer = self.producer_factory()
        self.producer.init_transactions()
        self.published = last_published_sequence(self.tail_reader, self.topic)
        log.info("alert publisher started", topic=self.topic, last_sequence=self.published)

    def publish_once(self) -> int:
        with self.views.transaction() as tx:
            pending = alerts_after(tx, self.published, self.batch_size)
        if not pending:
            return 0
        try:
            self.producer.begin_transaction()
            for sequence, raised in pending:
                self.producer.send(
                    self.topic,
                    key=raised.alert.recipient.encode(),
                    value=alert_message(sequence, raised),
                )
            self.producer.commit_transaction()
        except Exception:
            # Whether the transaction committed is unknown: start again from what the topic
            # holds, with a new producer (which aborts the old transaction if it is open).
            self.start()
            raise
        self.published = pending[-1][0]
        return len(pending)

    def run(self, shutdown: Shutdown, idle_wait: float = 0.1) -> None:
        try:
            with_retries(self.start, shutdown, "start alert publisher")
            while not shutdown.requested:
                if not with_retries(self.publish_once, shutdown, "publish alerts"):
                    (self.wakeup or shutdown.wait)(idle_wait)
        except Stopped:
            pass  # an uncommitted transaction is aborted; its alerts are sent on restart
        finally:
            if self.producer is not None:
                self.producer.close()
            self.tail_reader.close()
            log.info("alert publisher stopped", last_sequence=self.published)
