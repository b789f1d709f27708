"""A partition a consumer holds whose messages wait but are never fetched is noticed while
the consumer is idle: sought again and resumed, and if that does not move it, the consumer
leaves its group and joins it again."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from consumers.offsets import StallWatch

FIRST, SECOND = TopicPartition("events", 0), TopicPartition("events", 1)


class StillConsumer:
    """Holds partitions at fixed positions below fixed ends; records what it is told."""

    def __init__(
        self, positions: dict[TopicPartition, int | None], ends: dict[TopicPartition, int]
    ):
        self.positions = positions
        self.ends = ends
        self.sought: list[tuple[TopicPartition, int]] = []
        self.resumed: list[TopicPartition] = []
        self.failure: Exception | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.failure is not None:
            raise self.failure
        return {p: self.ends[p] for p in partitions}

    def position(self, partition: TopicPartition, timeout_ms: int) -> int | None:
        return self.positions[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.sought.append((partition, offset))

    def resume(self, *partitions: TopicPartition) -> None:
        self.resumed.extend(partitions)


class Watched:
    def __init__(self, consumer: StillConsumer) -> None:
        self.now = 0.0
        self.rejoins = 0
        self.consumer = consumer
        self.stored = {FIRST: 25, SECOND: 3}
        self.watch = StallWatch(consumer, self._rejoin, self.stored.__getitem__, lambda: self.now)

    def _rejoin(self) -> None:
        self.rejoins += 1

    def idle_after(self, seconds: float) -> None:
        self.now += seconds
        self.watch.idle()


def test_a_partition_behind_and_unmoved_over_a_check_is_sought_again_and_resumed() -> None:
    consumer = StillConsumer({FIRST: 40, SECOND: 7}, {FIRST: 90, SECOND: 7})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)  # first look: FIRST is behind
    assert consumer.sought == []
    watched.idle_after(StallWatch.CHECK_SECONDS)  # still at 40, given nothing
    assert consumer.sought == [(FIRST, 40)]  # SECOND is at its end: not stalled
    assert consumer.resumed == [FIRST]
    assert watched.rejoins == 0


def test_a_partition_still_stalled_after_being_sought_makes_the_consumer_rejoin() -> None:
    consumer = StillConsumer({FIRST: 40}, {FIRST: 90})
    watched = Watched(consumer)
    for _ in range(3):
        watched.idle_after(StallWatch.CHECK_SECONDS)
    assert len(consumer.sought) == 1
    assert watched.rejoins == 1


def test_a_partition_given_messages_between_checks_is_not_stalled() -> None:
    consumer = StillConsumer({FIRST: 40}, {FIRST: 90})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)
    watched.watch.delivered([FIRST])
    watched.idle_after(StallWatch.CHECK_SECONDS)
    assert consumer.sought == []


def test_a_partition_that_moved_between_checks_is_not_stalled() -> None:
    consumer = StillConsumer({FIRST: 40}, {FIRST: 90})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)
    consumer.positions[FIRST] = 41
    watched.idle_after(StallWatch.CHECK_SECONDS)
    assert consumer.sought == []


def test_the_partitions_are_checked_at_most_every_check_interval() -> None:
    consumer = StillConsumer({FIRST: 40}, {FIRST: 90})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)
    for _ in range(5):
        watched.idle_after(StallWatch.CHECK_SECONDS / 10)
    assert consumer.sought == []


def test_a_check_the_broker_cannot_answer_changes_nothing() -> None:
    consumer = StillConsumer({FIRST: 40}, {FIRST: 90})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)
    consumer.failure = KafkaTimeoutError("broker away")
    watched.idle_after(StallWatch.CHECK_SECONDS)
    assert consumer.sought == []
    assert watched.rejoins == 0


def test_a_partition_whose_position_stays_unresolved_is_sought_to_its_stored_position() -> None:
    consumer = StillConsumer({FIRST: None, SECOND: 7}, {FIRST: 90, SECOND: 7})
    watched = Watched(consumer)
    watched.idle_after(StallWatch.CHECK_SECONDS)
    assert consumer.sought == []
    watched.idle_after(StallWatch.CHECK_SECONDS)
    assert consumer.sought == [(FIRST, 25)]
    assert consumer.resumed == [FIRST]
    watched.idle_after(StallWatch.CHECK_SECONDS)  # still unresolved
    assert watched.rejoins == 1
