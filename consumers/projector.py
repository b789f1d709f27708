"""A projector fed from Kafka: one consumer group per projection.

For each partition of a polled batch (a poll, and the polls that follow at once while
catching up), the writer stores the view and the position
(``<topic>-<partition>`` -> next offset) in one database transaction; the Kafka offset is
committed only after that. On every (re)assignment the consumer seeks to the positions in
the database, which are the truth: an offset committed to Kafka but not to the database
(or the reverse) can neither lose nor repeat anything. Two instances share the partitions.
While idle, the consumer commits again what the broker did not confirm and looks for
partitions left unfetched (``consumers.offsets``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import structlog
from kafka import TopicPartition
from kafka.errors import KafkaError

from consumers.offsets import GroupMembership, upstream_of
from consumers.runtime import Shutdown, Stopped, with_retries
from consumers.wire import RUN_CONTINUES, DecodedMessage, decode_message
from infra.process import collector_paused
from projections.base import Delivery, ProjectionWriter

log = structlog.get_logger(__name__)


def delivery_of(position: int, decoded: DecodedMessage) -> Delivery:
    """A decoded message as delivered to a projection (a fact as its document alone)."""
    return Delivery(position, decoded.event, decoded.document, decoded.offender_id, decoded.version)


def with_polls_ready_at_once(
    consumer: Any, polled: Mapping[TopicPartition, Sequence[Any]], up_to: int
) -> dict[TopicPartition, list[Any]]:
    """``polled`` and the messages of the polls that follow it at once (never waiting), up
    to ``up_to`` messages in all, each partition's in offset order. A poll that fails ends
    the batch: the next poll waits it out, and what was polled goes first."""
    batch = {partition: list(messages) for partition, messages in polled.items()}
    count = sum(map(len, batch.values()))
    while count < up_to:
        try:
            more = consumer.poll(timeout_ms=0)
        except KafkaError as error:
            log.warning("poll failed", error=repr(error))
            break
        if not more:
            break
        for partition, messages in more.items():
            batch.setdefault(partition, []).extend(messages)
            count += len(messages)
    return batch


class SplitBatch(NamedTuple):
    """A batch split where an offender's run is not whole in it (``split_at_open_runs``)."""

    # What to store now: each partition's messages before the first of a run not whole.
    whole: dict[TopicPartition, list[Any]]
    # The rest of each partition's messages, from the first of a run not whole.
    held_back: dict[TopicPartition, list[Any]]


def split_at_open_runs(
    batch: Mapping[TopicPartition, Sequence[Any]], full: bool = False
) -> SplitBatch:
    """Split each partition's messages before the first message of an offender's run whose
    last message is not in the batch (a message with ``RUN_CONTINUES`` not followed, in the
    batch, by one of that offender without it).

    A run is what one ingest transaction stored for an offender, recorded at one moment: the
    relay never ends a page inside one, but a fetch may end anywhere. Judged in halves, a
    release could raise an alert that a withdrawal in the second half rules out (an audit
    raised 217 such alerts with the relay sending one event at a time). The embedded path
    reads the log the same way (``page_of_whole_runs``). The messages held back go first in
    the next batch (``KafkaProjector``); those of offenders already stored that came after
    the split point are then repeats, skipped by version.

    ``full``: the batch is as large as it may be. A partition that would then keep nothing
    is kept whole, since reading it again could never make its run whole (a run longer
    than a batch); such a split is logged.
    """
    whole: dict[TopicPartition, list[Any]] = {}
    held_back: dict[TopicPartition, list[Any]] = {}
    for partition, messages in batch.items():
        # The offender (message key) -> where its run not yet whole starts in ``messages``.
        open_from: dict[bytes, int] = {}
        for index, message in enumerate(messages):
            if RUN_CONTINUES in (message.headers or ()):
                open_from.setdefault(message.key, index)
            else:
                open_from.pop(message.key, None)
        split = min(open_from.values(), default=len(messages))
        if split == 0 and full and messages:
            log.warning("a run longer than a batch is stored in parts",
                        upstream=upstream_of(partition),
                        offset=messages[0].offset)  # fmt: skip
            split = len(messages)
        whole[partition] = list(messages[:split])
        if split < len(messages):
            held_back[partition] = list(messages[split:])
    return SplitBatch(whole, held_back)


class KafkaProjector:
    # A batch slower to store than this per 1,000 messages is logged (a stall an alert's
    # latency would show).
    SLOW_BATCH_SECONDS = 0.5
    # Messages applied in one transaction at most: more polls are taken while the consumer
    # has more ready at once (catching up), never waiting for them. Nationally, 20,000
    # instead of 5,000 made every catch-up 27-35% faster (two runs against the last with
    # 5,000, on faster and slower machines) and the largest projector process 897-913 MiB
    # instead of 785. 40,000 instead of 20,000: 11% less CPU a message again (caseload and
    # victim alerts, one process, half the national topic), once cached histories kept
    # their documents as JSON only and left the memory for it.
    MAX_BATCH = 40_000
    # For a projection whose cached histories stay decoded (victim alerts): 40,000 took its
    # process to 997 MiB.
    MAX_BATCH_KEPT_DECODED = 20_000

    def __init__(
        self,
        writer: ProjectionWriter,
        consumer: Any,
        topic: str,
    ) -> None:
        self.writer = writer
        self.consumer = consumer
        self.topic = topic
        kept_decoded = writer.projection.reads_every_document
        self.max_batch = self.MAX_BATCH_KEPT_DECODED if kept_decoded else self.MAX_BATCH
        self.reads_findings = writer.projection.reads_findings
        # Each partition's messages held back from the last batch (``_with_carried``).
        self._carried: dict[TopicPartition, list[Any]] = {}

    def run(self, shutdown: Shutdown) -> None:
        membership = GroupMembership(
            self.consumer, self.topic, lambda tp: self.writer.position(upstream_of(tp))
        )
        membership.join()
        name = self.writer.projection.name
        log.info("projector started", projection=name, topic=self.topic)
        try:
            while not shutdown.requested:
                polled = with_retries(
                    partial(self.consumer.poll, timeout_ms=500), shutdown, f"poll for {name}"
                )
                if polled:
                    self._store_batch(polled, membership, shutdown)
                else:
                    membership.idle()
        except Stopped:
            pass  # the batch was not stored: it will be delivered again
        finally:
            self.consumer.close()
            log.info("projector stopped", projection=name)

    def _store_batch(
        self,
        polled: Mapping[TopicPartition, Sequence[Any]],
        membership: GroupMembership,
        shutdown: Shutdown,
    ) -> None:
        """Take the polls ready after ``polled`` into one batch and store it, with the
        collector paused until the batch's messages are let go (see ``collector_paused``):
        the collection that follows walks what the batch kept, not what it read."""
        with collector_paused():
            batch = self._with_carried(self._with_what_is_ready(polled))
            full = sum(map(len, batch.values())) >= self.max_batch
            whole, self._carried = split_at_open_runs(batch, full)
            del batch
            if any(whole.values()):
                name = self.writer.projection.name
                with_retries(partial(self._project, whole), shutdown, f"project {name}")
                membership.stored(whole)
            del whole

    def _with_carried(
        self, batch: dict[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """``batch`` after the messages the last batch held back (an offender's run whose
        last message it had not fetched), where they still come first.

        They are kept, not fetched again: seeking back to them would make the consumer drop
        what it had fetched ahead of them, and fetch it again. The offsets committed and the
        positions stored stop before them, so a crash reads them again. A partition revoked
        since is left to its new holder; one sought elsewhere since (assigned again, from
        its stored position) is read from there.
        """
        carried, self._carried = self._carried, {}
        if not carried:
            return batch
        assigned = self.consumer.assignment()
        merged: dict[TopicPartition, list[Any]] = {}
        for partition, held in carried.items():
            new = batch.get(partition, [])
            if partition in assigned and (not new or new[0].offset == held[-1].offset + 1):
                merged[partition] = held + new
        for partition, messages in batch.items():
            merged.setdefault(partition, messages)
        return merged

    def _with_what_is_ready(
        self, polled: Mapping[TopicPartition, Sequence[Any]]
    ) -> dict[TopicPartition, list[Any]]:
        """This poll's messages and those of the polls ready at once, up to ``MAX_BATCH``.

        A consumer catching up gets 1,000 messages a poll, and with many offenders nearly
        every message is its offender's only one in the batch: each then costs a fold of
        the offender's rules and a write of their history and rows. Five times as many
        messages a batch made a national catch-up use a quarter less CPU a message (one
        process, the same messages), and 20 times as many 5-10% less again, as an offender
        meets more of their own facts in one batch. A consumer keeping up gets what has
        arrived, as before: the poll that follows returns nothing, without waiting.
        """
        return with_polls_ready_at_once(self.consumer, polled, self.max_batch)

    def _project(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> int:
        """Every partition of one batch (a poll and those ready after it) in one
        transaction (see ``handle_all``)."""
        batches: dict[str, list[Delivery]] = {}
        for partition, messages in polled.items():
            deliveries = batches.setdefault(upstream_of(partition), [])
            for message in messages:
                try:
                    decoded = decode_message(message.value, findings=self.reads_findings)
                except ValueError as error:
                    # Only the relay writes this topic; a message it could not have written
                    # is logged and passed over rather than blocking the partition for ever.
                    log.error("undecodable event message skipped",
                              upstream=upstream_of(partition), offset=message.offset,
                              error=str(error))  # fmt: skip
                    continue
                deliveries.append(delivery_of(message.offset + 1, decoded))
        started = time.perf_counter()
        applied = self.writer.handle_all(batches)
        seconds = time.perf_counter() - started
        count = sum(map(len, batches.values()))
        if seconds >= self.SLOW_BATCH_SECONDS * max(1.0, count / 1000):
            log.warning("slow batch", projection=self.writer.projection.name,
                        messages=count, applied=applied,
                        ms=round(seconds * 1000))  # fmt: skip
        return applied
