"""Kafka offsets for a consumer whose positions are stored in the database.

The database holds the truth of what a consumer group has consumed: each partition's next
offset, stored in the same transaction as what it consumed. On every assignment the
consumer seeks to those positions (:class:`SeekToStoredPositions`).

The offsets committed to Kafka are hints: they are what ``mappa status``, the benchmarks and
every operator's Kafka tooling read as the group's lag. A hint must therefore come true
once the group has caught up, even when a commit failed. A commit sent while the group
rebalances (a second process joining, a process stopping) is refused, and if no message
follows on that partition nothing would ever commit it again: the group would show a lag
that is not there, for ever. So :class:`OffsetHints` keeps every offset it has not seen
confirmed, and commits it again when the consumer is idle; and on every assignment it
queues the stored position of each partition it was given, so that whichever process gets
a partition makes its committed offset true, even one another process failed to commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog
from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaError

log = structlog.get_logger(__name__)


def upstream_of(partition: TopicPartition) -> str:
    """A partition's name as a stored position (``<topic>-<partition>``)."""
    return f"{partition.topic}-{partition.partition}"


class OffsetHints:
    """The offsets to commit to Kafka after the database commit, until Kafka confirms them.

    Commits are asynchronous (waiting for the broker's answer cost each batch a round trip)
    and a failed one is no reason to stop: the offset stays unconfirmed, and the next batch
    or the next idle poll (at most every ``RETRY_SECONDS``) carries it again.
    """

    RETRY_SECONDS = 1.0

    def __init__(self, consumer: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.clock = clock
        # partition -> the next offset to commit, not yet confirmed by the broker
        self.unconfirmed: dict[TopicPartition, int] = {}
        self._last_sent = float("-inf")

    def stored(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """A batch's messages are stored: commit the offsets after them."""
        for partition, messages in polled.items():
            if messages:
                self.unconfirmed[partition] = messages[-1].offset + 1
        self._commit()

    def idle(self) -> None:
        """A poll returned nothing: commit again what was not confirmed, if anything."""
        if self.unconfirmed and self.clock() - self._last_sent >= self.RETRY_SECONDS:
            self._commit()

    def assigned(self, positions: Mapping[TopicPartition, int]) -> None:
        """The group gave this consumer these partitions, stored at these positions."""
        for partition, position in positions.items():
            if position:
                self.unconfirmed[partition] = position

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """These partitions went to another consumer, which makes their offsets true."""
        for partition in partitions:
            self.unconfirmed.pop(partition, None)

    def _commit(self) -> None:
        if not self.unconfirmed:
            return
        offsets = {p: OffsetAndMetadata(o, "", -1) for p, o in self.unconfirmed.items()}
        self._last_sent = self.clock()

        def answered(_offsets: Any, response: Any) -> None:
            if isinstance(response, Exception):
                log.warning("offset commit failed; it will be sent again", error=repr(response))
                return
            for partition, committed in offsets.items():
                # A later batch may have moved the partition on since this commit was sent.
                if self.unconfirmed.get(partition) == committed.offset:
                    del self.unconfirmed[partition]

        try:
            self.consumer.commit_async(offsets, callback=answered)
        except KafkaError as error:
            log.warning("offset commit failed; it will be sent again", error=repr(error))


class SeekToStoredPositions(ConsumerRebalanceListener):
    """On every assignment, seek each partition to the position stored in the database
    (``stored``), the truth of what was consumed, and make it the partition's hint."""

    def __init__(
        self, consumer: Any, stored: Callable[[TopicPartition], int], hints: OffsetHints
    ) -> None:
        self.consumer = consumer
        self.stored = stored
        self.hints = hints

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.hints.revoked(revoked)
        log.info("partitions revoked", partitions=sorted(upstream_of(tp) for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        positions = {partition: self.stored(partition) for partition in assigned}
        for partition, position in positions.items():
            if position:
                self.consumer.seek(partition, position)
        self.hints.assigned(positions)
        log.info("partitions assigned", partitions=sorted(upstream_of(tp) for tp in assigned))
