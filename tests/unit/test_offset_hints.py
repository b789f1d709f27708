"""The offsets committed to Kafka come true once a consumer has caught up: a refused commit
is sent again when the consumer is idle, and every assignment makes the stored positions
the partitions' hints (the group's lag, as ``mappa status`` and operators read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaConnectionError

from consumers.offsets import OffsetHints, SeekToStoredPositions

FIRST, SECOND = TopicPartition("events", 0), TopicPartition("events", 1)


@dataclass(frozen=True)
class Message:
    offset: int


def polled(**last_offsets: int) -> dict[TopicPartition, list[Message]]:
    partitions = {"first": FIRST, "second": SECOND}
    return {partitions[name]: [Message(offset)] for name, offset in last_offsets.items()}


class RecordingConsumer:
    """Keeps each asynchronous commit until the test answers it, as the broker would."""

    def __init__(self, refuse_with: Exception | None = None) -> None:
        self.sent: list[dict[TopicPartition, int]] = []
        self._callbacks: list[Any] = []
        self.sought: dict[TopicPartition, int] = {}
        self.refuse_with = refuse_with

    def commit_async(self, offsets: Any, callback: Any) -> None:
        if self.refuse_with is not None:
            raise self.refuse_with
        self.sent.append({p: o.offset for p, o in offsets.items()})
        self._callbacks.append((offsets, callback))

    def answer(self, response: Any = "ok") -> None:
        offsets, callback = self._callbacks.pop(0)
        callback(offsets, response)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.sought[partition] = offset


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def hints_for(consumer: RecordingConsumer) -> tuple[OffsetHints, Clock]:
    clock = Clock()
    return OffsetHints(consumer, clock=clock), clock


def test_a_stored_batch_commits_the_offsets_after_its_last_messages() -> None:
    consumer = RecordingConsumer()
    hints, _ = hints_for(consumer)
    hints.stored(polled(first=9, second=3))
    assert consumer.sent == [{FIRST: 10, SECOND: 4}]


def test_a_batch_stored_after_its_partitions_were_revoked_commits_none_of_their_offsets() -> None:
    # A batch polled, then its partitions revoked by the polls ready at once after it, then
    # stored: SECOND now belongs to another consumer, which commits newer offsets; a late
    # commit of 10 from this one would take the group's offset back.
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    listener = SeekToStoredPositions(consumer, {FIRST: 42, SECOND: 7}.__getitem__, hints)
    listener.on_partitions_assigned([FIRST, SECOND])
    hints.idle()
    consumer.answer()
    listener.on_partitions_revoked([FIRST, SECOND])
    hints.stored(polled(first=50, second=9))
    assert len(consumer.sent) == 1  # nothing to commit: neither is this consumer's
    listener.on_partitions_assigned([FIRST])
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert consumer.sent[-1] == {FIRST: 42}
    hints.stored(polled(first=60))
    assert consumer.sent[-1] == {FIRST: 61}


def test_a_refused_commit_is_sent_again_when_the_consumer_is_idle() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=9))
    consumer.answer(CommitFailedError("the group is rebalancing"))
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert consumer.sent == [{FIRST: 10}, {FIRST: 10}]
    consumer.answer()
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert len(consumer.sent) == 2  # confirmed: nothing more to send


def test_a_confirmed_commit_is_not_sent_again() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=9))
    consumer.answer()
    clock.now += 60
    hints.idle()
    assert consumer.sent == [{FIRST: 10}]


def test_an_idle_consumer_sends_an_unconfirmed_commit_at_most_every_retry_interval() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=9))  # not answered yet
    hints.idle()
    clock.now += OffsetHints.RETRY_SECONDS / 2
    hints.idle()
    assert len(consumer.sent) == 1
    clock.now += OffsetHints.RETRY_SECONDS / 2
    hints.idle()
    assert len(consumer.sent) == 2


def test_the_confirmation_of_an_older_commit_leaves_a_later_offset_unconfirmed() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=9))
    hints.stored(polled(first=19))
    consumer.answer()  # the first commit (offset 10) is confirmed
    consumer.answer(KafkaConnectionError("broker away"))  # the second is not
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert consumer.sent[-1] == {FIRST: 20}


def test_a_commit_that_cannot_be_sent_is_kept_for_the_next_idle_poll() -> None:
    consumer = RecordingConsumer(refuse_with=KafkaConnectionError("broker away"))
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=4))  # raises nothing
    consumer.refuse_with = None
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert consumer.sent == [{FIRST: 5}]


def test_an_assignment_seeks_to_the_stored_positions_and_makes_them_the_hints() -> None:
    consumer = RecordingConsumer()
    hints, _ = hints_for(consumer)
    listener = SeekToStoredPositions(consumer, {FIRST: 42, SECOND: 0}.__getitem__, hints)
    listener.on_partitions_assigned([FIRST, SECOND])
    assert consumer.sought == {FIRST: 42}  # nothing stored for SECOND: Kafka's offset stands
    hints.idle()
    assert consumer.sent == [{FIRST: 42}]


def test_partitions_revoked_from_a_consumer_are_not_committed_by_it_again() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    listener = SeekToStoredPositions(consumer, {FIRST: 42, SECOND: 7}.__getitem__, hints)
    hints.stored(polled(first=9, second=3))
    consumer.answer(CommitFailedError("the group is rebalancing"))
    listener.on_partitions_revoked([FIRST, SECOND])
    listener.on_partitions_assigned([SECOND])
    clock.now += OffsetHints.RETRY_SECONDS
    hints.idle()
    assert consumer.sent[-1] == {SECOND: 7}


def test_a_run_of_refused_commits_is_logged_once_then_every_sixtieth_time() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=1))
    with structlog.testing.capture_logs() as logs:
        for _ in range(2 * OffsetHints.LOG_EVERY):
            consumer.answer(KafkaConnectionError("broker away"))
            clock.now += OffsetHints.RETRY_SECONDS
            hints.idle()
        consumer.answer()
        hints.stored(polled(first=2))
        consumer.answer(KafkaConnectionError("broker away again"))
    runs = [entry["failures_in_a_row"] for entry in logs]
    assert runs == [1, OffsetHints.LOG_EVERY + 1, 1]


def test_commits_left_unanswered_by_the_broker_are_logged_once_until_one_is_answered() -> None:
    consumer = RecordingConsumer()
    hints, clock = hints_for(consumer)
    hints.stored(polled(first=4))
    with structlog.testing.capture_logs() as logs:
        for _ in range(int(OffsetHints.UNANSWERED_SECONDS) * 2):
            clock.now += OffsetHints.RETRY_SECONDS
            hints.idle()
        consumer.answer()  # the first is answered, refused at last: the run ends
        for _ in range(int(OffsetHints.UNANSWERED_SECONDS) - 2):
            clock.now += OffsetHints.RETRY_SECONDS
            hints.idle()
    unanswered = [e for e in logs if e["event"].startswith("offset commits unanswered")]
    assert len(unanswered) == 1
    assert unanswered[0]["partitions"] == ["events-0@5"]
    assert unanswered[0]["seconds"] == OffsetHints.UNANSWERED_SECONDS
