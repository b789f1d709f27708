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
a partition makes its committed offset true, even one another process failed to commit. A
partition taken from a process is never committed by it again (until it is given back): its
late commit would overwrite the new holder's newer offset.

:class:`StallWatch` looks, while the consumer is idle, for a partition whose messages wait
but are never fetched, and gets it moving again; :class:`GroupMembership` puts the three
together for the ingest and projector loops.
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
    LOG_EVERY = 60  # failures in a row
    # Commits the broker has answered neither way for this long are logged (once a run):
    # a lag that never clears would otherwise be silent.
    UNANSWERED_SECONDS = 30.0

    def __init__(self, consumer: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer = consumer
        self.clock = clock
        # partition -> the next offset to commit, not yet confirmed by the broker
        self.unconfirmed: dict[TopicPartition, int] = {}
        self._last_sent = float("-inf")
        self._failures = 0
        # Partitions revoked from this consumer and not assigned to it since: a batch polled
        # before a revocation and stored after it must not commit their offsets, which are
        # another consumer's to commit now. Sent later (the broker does not check who holds
        # a partition), an offset stored then would overwrite the newer one the new holder
        # committed, and the group would show a lag that is not there, for ever.
        self._disowned: set[TopicPartition] = set()
        # When the first commit not yet answered was sent (None: every one was answered).
        self._awaiting_since: float | None = None
        self._unanswered_logged = False

    def stored(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """A batch's messages are stored: commit the offsets after them."""
        for partition, messages in polled.items():
            if messages and partition not in self._disowned:
                self.unconfirmed[partition] = messages[-1].offset + 1
        self._commit()

    def idle(self) -> None:
        """A poll returned nothing: commit again what was not confirmed, if anything."""
        if self.unconfirmed and self.clock() - self._last_sent >= self.RETRY_SECONDS:
            self._commit()
        self._log_if_unanswered()

    def assigned(
        self, partitions: Iterable[TopicPartition], positions: Mapping[TopicPartition, int]
    ) -> None:
        """The group gave this consumer these partitions, some stored at these positions."""
        self._disowned.difference_update(partitions)
        self.unconfirmed.update(positions)

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """These partitions went to another consumer, which makes their offsets true."""
        for partition in partitions:
            self.unconfirmed.pop(partition, None)
            self._disowned.add(partition)

    def _commit(self) -> None:
        if not self.unconfirmed:
            return
        offsets = {p: OffsetAndMetadata(o, "", -1) for p, o in self.unconfirmed.items()}
        self._last_sent = self.clock()

        def answered(_offsets: Any, response: Any) -> None:
            self._awaiting_since = None
            self._unanswered_logged = False
            if isinstance(response, Exception):
                self._failed(response)
                return
            self._failures = 0
            for partition, committed in offsets.items():
                # A later batch may have moved the partition on since this commit was sent.
                if self.unconfirmed.get(partition) == committed.offset:
                    del self.unconfirmed[partition]

        try:
            self.consumer.commit_async(offsets, callback=answered)
        except KafkaError as error:
            self._failed(error)
            return
        if self._awaiting_since is None:
            self._awaiting_since = self._last_sent

    def _log_if_unanswered(self) -> None:
        if self._awaiting_since is None or self._unanswered_logged:
            return
        waited = self.clock() - self._awaiting_since
        if waited >= self.UNANSWERED_SECONDS:
            self._unanswered_logged = True
            log.warning(
                "offset commits unanswered by the broker; still sending them",
                seconds=round(waited),
                partitions=sorted(f"{upstream_of(p)}@{o}" for p, o in self.unconfirmed.items()),
            )

    def _failed(self, error: Exception) -> None:
        # With the broker away this happens every second: the first of a run of failures
        # and every 60th after it are enough to read in the log.
        self._failures += 1
        if self._failures % self.LOG_EVERY == 1:
            log.warning(
                "offset commit failed; it will be sent again",
                error=repr(error),
                failures_in_a_row=self._failures,
            )


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
        # A partition with nothing stored (0) keeps Kafka's committed offset.
        stored = {partition: self.stored(partition) for partition in assigned}
        positions = {partition: position for partition, position in stored.items() if position}
        for partition, position in positions.items():
            self.consumer.seek(partition, position)
        self.hints.assigned(assigned, positions)
        log.info("partitions assigned", partitions=sorted(upstream_of(tp) for tp in assigned))


class StallWatch:
    """Notices a partition this consumer holds whose messages wait but are never fetched,
    and gets it moving again.

    kafka-python 3.0 keeps a state machine per assigned partition (paused, awaiting a reset
    or a validation, pending revocation), and some of its releases left a partition that
    way after a rebalance, never fetched again until the next one (its issues #3106 and
    #3131). Nothing else would notice: the process is alive, the other partitions flow,
    and an offender's events would wait for ever. So, when polls return nothing, every
    ``CHECK_SECONDS`` the watch compares each assigned partition's position with its end:
    one behind, not moved since the last check and given nothing in between is stalled. It
    is sought to where it stands and resumed (which gives it a fresh fetch state); one
    still stalled at the next check makes the consumer leave the group and join it again
    (``rejoin``), which gives every partition new state. Each step is logged as a warning.
    A partition whose position the consumer cannot resolve at all (a reset or validation
    that never completes) counts as standing at no position: stalled, it is sought to the
    position stored in the database (``stored``).
    """

    CHECK_SECONDS = 10.0
    POSITION_TIMEOUT_MS = 2000
    # The position of a partition the consumer cannot resolve (below any real offset).
    UNRESOLVED = -1

    def __init__(
        self,
        consumer: Any,
        rejoin: Callable[[], None],
        stored: Callable[[TopicPartition], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.rejoin = rejoin
        self.stored = stored
        self.clock = clock
        self._last_check = clock()
        # Partitions behind their end at the last check, with their position then.
        self._behind: dict[TopicPartition, int] = {}
        self._nudged: set[TopicPartition] = set()

    def delivered(self, partitions: Iterable[TopicPartition]) -> None:
        """A poll gave messages of these partitions: they are moving."""
        for partition in partitions:
            self._behind.pop(partition, None)
            self._nudged.discard(partition)

    def idle(self) -> None:
        """A poll returned nothing: check the assigned partitions, if it is time."""
        now = self.clock()
        if now - self._last_check < self.CHECK_SECONDS:
            return
        self._last_check = now
        try:
            behind = self._behind_their_end()
        except KafkaError as error:  # the broker away: the next check looks again
            log.info("stall check skipped", error=repr(error))
            return
        stalled = sorted(p for p, position in behind.items() if self._behind.get(p) == position)
        self._behind = behind
        if not stalled:
            self._nudged.clear()
            return
        if any(partition in self._nudged for partition in stalled):
            log.warning(
                "partitions still stalled: leaving the group and joining it again",
                partitions=[upstream_of(p) for p in stalled],
            )
            self._behind.clear()
            self._nudged.clear()
            self.rejoin()
            return
        log.warning(
            "partitions stalled: messages wait but none are fetched; seeking them again",
            partitions=[f"{upstream_of(p)}@{self._shown(behind[p])}" for p in stalled],
        )
        for partition in stalled:
            position = behind[partition]
            self.consumer.seek(
                partition, self.stored(partition) if position == self.UNRESOLVED else position
            )
        self.consumer.resume(*stalled)
        self._nudged.update(stalled)

    def _behind_their_end(self) -> dict[TopicPartition, int]:
        assigned = sorted(self.consumer.assignment())
        if not assigned:
            return {}
        ends = self.consumer.end_offsets(assigned)
        behind: dict[TopicPartition, int] = {}
        for partition in assigned:
            position = self.consumer.position(partition, timeout_ms=self.POSITION_TIMEOUT_MS)
            if position is None:
                position = self.UNRESOLVED
            if position < int(ends.get(partition, 0)):
                behind[partition] = position
        return behind

    def _shown(self, position: int) -> str:
        return "unresolved" if position == self.UNRESOLVED else str(position)


class GroupMembership:
    """A consumer's part in its group, for a consumer whose positions are stored in the
    database: subscribed with :class:`SeekToStoredPositions`, its offsets committed as
    :class:`OffsetHints`, its partitions watched for stalls (:class:`StallWatch`)."""

    def __init__(self, consumer: Any, topic: str, stored: Callable[[TopicPartition], int]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.hints = OffsetHints(consumer)
        self.watch = StallWatch(consumer, self.rejoin, stored)
        self._listener = SeekToStoredPositions(consumer, stored, self.hints)

    # How long ``join`` waits for the consumer's metadata to show the topic's partitions.
    METADATA_WAIT_SECONDS = 30.0

    def join(self) -> None:
        """Subscribe, and wait until the consumer's own metadata shows the topic's partitions
        (``kafka.await_own_metadata``) so that its first join is assigned them.

        A member that joins before its metadata has them is assigned none, and must rejoin
        once they appear; kafka-python left such a rejoin unfinished when a poll ran out of
        time during it (now finished: see ``infra.kafka.consumer``), and a projector sat
        with no partitions until the test waiting for it gave up. Waiting for another
        client to see the topic was not enough: the broker knew it, but a CI run's leader
        still had no metadata for it when it assigned the partitions (as every leader of
        25 runs of that test did).
        """
        from infra import kafka

        deadline = time.monotonic() + self.METADATA_WAIT_SECONDS
        self.consumer.subscribe([self.topic], listener=self._listener)
        if not kafka.await_own_metadata(self.consumer, self.topic, deadline):
            log.warning("joining before the topic's partitions are known", topic=self.topic)

    def rejoin(self) -> None:
        self.hints.revoked(self.consumer.assignment())
        self.consumer.unsubscribe()
        self.join()

    def stored(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """A polled batch is stored in the database."""
        self.watch.delivered(polled)
        self.hints.stored(polled)

    def idle(self) -> None:
        """A poll returned nothing."""
        self.hints.idle()
        self.watch.idle()
