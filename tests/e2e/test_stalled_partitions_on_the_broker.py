"""On the real broker and client: a partition kafka-python holds but no longer fetches is
moved again by the consumers' stall watch, whether seeking it again is enough or the
consumer has to join its group again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import TopicPartition

from consumers.offsets import GroupMembership, StallWatch
from infra import kafka
from tests.e2e.pipeline import kafka_bootstrap, produce, scratch_topic, wait_until

pytestmark = pytest.mark.e2e

MESSAGES = 40  # a partition


@pytest.fixture
def topic() -> Iterator[str]:
    with scratch_topic("test-stall") as name:
        produce(name, range(MESSAGES))
        yield name


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Remedies:
    """What the watch did."""

    def __init__(self) -> None:
        self.resumed: list[TopicPartition] = []
        self.rejoins = 0


def consume_with_a_stall(
    topic: str, stall: Callable[[Any, TopicPartition], None]
) -> tuple[list[str], Remedies]:
    """Consume ``topic`` as the tracker's consumers do, ``stall``-ing partition 0 as soon as
    it is first assigned (before anything of it is fetched), then keep polling (the watch's
    clock moving on a check each idle poll) until every message has come."""
    consumer = kafka.consumer(kafka_bootstrap(), f"test-stall-{uuid.uuid4().hex[:8]}")
    membership = GroupMembership(consumer, topic, stored=lambda _: 0)
    remedies = Remedies()
    resume, rejoin = consumer.resume, membership.rejoin

    def resumed(*partitions: TopicPartition) -> None:
        remedies.resumed.extend(partitions)
        resume(*partitions)

    def rejoined() -> None:
        remedies.rejoins += 1
        rejoin()

    consumer.resume = resumed
    clock = Clock()
    membership.watch = StallWatch(consumer, rejoined, lambda _: 0, clock=clock)
    assigned = membership._listener.on_partitions_assigned
    first = TopicPartition(topic, 0)

    def assigned_then_stalled(partitions: Any) -> None:
        assigned(partitions)
        if first in partitions and remedies.rejoins == 0:
            stall(consumer, first)

    membership._listener.on_partitions_assigned = assigned_then_stalled  # type: ignore[method-assign]
    membership.join()
    seen: list[str] = []

    def everything_came() -> bool:
        polled = consumer.poll(timeout_ms=200)
        if polled:
            seen.extend(m.value.decode() for ms in polled.values() for m in ms)
            membership.stored(polled)
        else:
            clock.now += StallWatch.CHECK_SECONDS
            membership.idle()
        return len(seen) >= 2 * MESSAGES

    try:
        wait_until(everything_came, 60, "every message, the stalled partition's too", every=0)
        return seen, remedies
    finally:
        consumer.close()


EVERY_MESSAGE = sorted(f"{p}-{n}" for p in (0, 1) for n in range(MESSAGES))


def test_a_paused_partition_is_sought_again_and_its_messages_come(topic: str) -> None:
    seen, remedies = consume_with_a_stall(
        topic, lambda consumer, partition: consumer.pause(partition)
    )
    assert sorted(seen) == EVERY_MESSAGE
    assert remedies.resumed == [TopicPartition(topic, 0)]
    assert remedies.rejoins == 0


def test_a_partition_left_pending_revocation_is_moved_by_joining_the_group_again(
    topic: str,
) -> None:
    def leave_pending_revocation(consumer: Any, partition: TopicPartition) -> None:
        # The state kafka-python 3.0.7-8 could leave a retained partition in (#3131): not
        # fetchable, which neither seek nor resume clears; a new assignment does.
        consumer._subscription.assignment[partition].mark_pending_revocation(True)

    seen, remedies = consume_with_a_stall(topic, leave_pending_revocation)
    assert sorted(seen) == EVERY_MESSAGE
    assert remedies.resumed == [TopicPartition(topic, 0)]
    assert remedies.rejoins == 1
