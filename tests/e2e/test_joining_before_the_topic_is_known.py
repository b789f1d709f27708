"""On the real broker and client: a consumer joins its group only once its own metadata
shows the topic's partitions, so its first assignment holds them.

Joining before that, it was assigned none; the rejoin kafka-python makes when the
partitions appear once never completed on a loaded machine, and a projector sat with no
partitions until a clean-clone run's test gave up on it (300 s).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.admin import NewTopic

from consumers.offsets import GroupMembership
from consumers.projector import with_polls_ready_at_once
from infra import kafka
from infra.kafka import admin_client
from tests.e2e.pipeline import kafka_bootstrap, produce, scratch_topic, wait_until

pytestmark = pytest.mark.e2e

PARTITIONS = 6


def recorded_assignments(membership: GroupMembership) -> list[set[TopicPartition]]:
    """Every assignment the member's rebalance listener is given, in order, from now on."""
    assignments: list[set[TopicPartition]] = []
    record = membership._listener.on_partitions_assigned

    def recorded(partitions: Any) -> None:
        assignments.append(set(partitions))
        record(partitions)

    membership._listener.on_partitions_assigned = recorded  # type: ignore[method-assign]
    return assignments


def test_a_consumer_joining_before_its_topic_exists_is_first_assigned_every_partition() -> None:
    topic = f"test-join-{uuid.uuid4().hex[:12]}"
    consumer = kafka.consumer(kafka_bootstrap(), f"test-join-{uuid.uuid4().hex[:8]}")
    membership = GroupMembership(consumer, topic, stored=lambda _: 0)
    assignments = recorded_assignments(membership)

    def create_the_topic_a_moment_later() -> None:
        time.sleep(1.5)
        with admin_client(kafka_bootstrap()) as admin:
            admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])

    creator = threading.Thread(target=create_the_topic_a_moment_later)
    creator.start()
    try:
        membership.join()

        def assigned() -> bool:
            consumer.poll(timeout_ms=200)
            return bool(assignments)

        wait_until(assigned, 60, "the group to assign the consumer its partitions")
        assert assignments[0] == {TopicPartition(topic, n) for n in range(PARTITIONS)}
    finally:
        creator.join()
        consumer.close()
        with admin_client(kafka_bootstrap()) as admin:
            admin.delete_topics([topic])


MESSAGES_PER_PARTITION = 2000


def consume_as_a_projector(
    topic: str, group: str, counts: dict[str, int], held: dict[str, list[set[TopicPartition]]],
    seen: set[bytes], name: str, wanted: int,
) -> None:  # fmt: skip
    """Join with ``GroupMembership`` and consume as a projector does: polls ready at once
    taken into one batch, the first batch slow to store (as a first fold is). The stall
    watch is off, so a stall would last. ``held``: its assignments, in order;
    ``seen``: every message either member read (a member reads its new partitions from 0)."""
    consumer = kafka.consumer(kafka_bootstrap(), group)
    membership = GroupMembership(consumer, topic, stored=lambda _: 0)
    membership.watch.idle = lambda: None  # type: ignore[method-assign]
    held[name] = recorded_assignments(membership)
    membership.join()
    deadline = time.monotonic() + 40
    first = True
    try:
        while time.monotonic() < deadline and len(seen) < wanted:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                continue
            batch = with_polls_ready_at_once(consumer, polled, 40_000)
            if first:
                time.sleep(2)
                first = False
            counts[name] = counts.get(name, 0) + sum(map(len, batch.values()))
            seen.update(message.value for messages in batch.values() for message in messages)
            membership.stored(batch)
    finally:
        consumer.close()


def test_two_consumers_started_together_share_the_partitions_and_read_them_at_once() -> None:
    """Two projectors started together: the first's partitions stalled after the second
    joined, and the second was never assigned any, while ``join`` waited for the topic on
    the consumer's own metadata (it filled it with every topic of the cluster, and the
    next refresh looked like a change). Every phase of a quick bench run stalled so.

    Half the messages are there before they start (the first may read them all in its
    first batch, before the second joins); the other half come once the group has shared
    the partitions, so each member must fetch its own."""
    with scratch_topic("test-two-join", PARTITIONS) as topic:
        produce(topic, range(MESSAGES_PER_PARTITION), PARTITIONS)
        group = f"test-two-join-{uuid.uuid4().hex[:8]}"
        counts: dict[str, int] = {}
        held: dict[str, list[set[TopicPartition]]] = {}
        seen: set[bytes] = set()
        wanted = 2 * PARTITIONS * MESSAGES_PER_PARTITION
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=consume_as_a_projector, args=(topic, group, counts, held, seen, name, wanted)
            )
            for name in ("first", "second")
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.1)

        def shared() -> bool:
            last = [held[name][-1] if held.get(name) else set() for name in ("first", "second")]
            return all(last) and set.union(*last) == {
                TopicPartition(topic, n) for n in range(PARTITIONS)
            }

        wait_until(shared, 20, "the group to share the partitions between both", every=0.05)
        produce(topic, range(MESSAGES_PER_PARTITION, 2 * MESSAGES_PER_PARTITION), PARTITIONS)
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
    assert len(seen) == wanted
    assert counts.get("second"), "the second consumer never read a message"
    assert took < 20, f"took {took:.0f} s"


def join_and_poll_once_assigned(topic: str) -> tuple[Any, set[TopicPartition]]:
    """A new group's consumer joins with ``GroupMembership``: what its own metadata knew of
    the topic's partitions when ``join`` returned, and its first assignment."""
    consumer = kafka.consumer(kafka_bootstrap(), f"test-own-{uuid.uuid4().hex[:8]}")
    membership = GroupMembership(consumer, topic, stored=lambda _: 0)
    assignments = recorded_assignments(membership)
    try:
        membership.join()
        known = consumer._cluster.partitions_for_topic(topic)

        def assigned() -> bool:
            consumer.poll(timeout_ms=200)
            return bool(assignments)

        wait_until(assigned, 60, "the group to assign the consumer its partitions")
        return known, assignments[0]
    finally:
        consumer.close()


def test_a_consumer_knows_its_topics_partitions_before_its_first_poll_joins_the_group() -> None:
    """The CI failure of stop 26: the topic existed and another client saw it, yet the
    consumer's first join was assigned nothing ("No partition metadata for topic") and
    the rejoin when its metadata caught up never completed. Joining waits for the
    consumer's own metadata, so the first poll's join has the partitions to assign."""
    with scratch_topic("test-own-metadata", PARTITIONS) as topic:
        every = {TopicPartition(topic, n) for n in range(PARTITIONS)}
        for attempt in range(5):
            known, first_assignment = join_and_poll_once_assigned(topic)
            assert known == set(range(PARTITIONS)), f"attempt {attempt}: knew {known}"
            assert first_assignment == every, f"attempt {attempt}"


class RecordedAssignments(ConsumerRebalanceListener):
    def __init__(self) -> None:
        self.assignments: list[set[TopicPartition]] = []

    def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.assignments.append(set(assigned))


def assigned_nothing_then_every_partition(polls_timeout_ms: int) -> list[set[TopicPartition]]:
    """A new group's consumer subscribes to a topic that does not exist yet and polls until
    its first join is done; the topic is then created, and it polls until it holds every
    partition. Its assignments, in order."""
    topic = f"test-rejoin-{uuid.uuid4().hex[:12]}"
    consumer = kafka.consumer(kafka_bootstrap(), f"test-rejoin-{uuid.uuid4().hex[:8]}")
    listener = RecordedAssignments()
    every = {TopicPartition(topic, n) for n in range(PARTITIONS)}

    def polled_until(done: Callable[[], bool]) -> Callable[[], bool]:
        def poll_once() -> bool:
            consumer.poll(timeout_ms=polls_timeout_ms)
            return done()

        return poll_once

    try:
        consumer.subscribe([topic], listener=listener)
        wait_until(polled_until(lambda: bool(listener.assignments)), 30, "the first join", 0)
        with admin_client(kafka_bootstrap()) as admin:
            admin.create_topics(
                [NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                wait_for_metadata=True,
            )
        wait_until(
            polled_until(lambda: consumer.assignment() == every), 30, "the rejoin to complete", 0
        )
        return listener.assignments
    finally:
        consumer.close()
        with admin_client(kafka_bootstrap()) as admin:
            admin.delete_topics([topic])


def test_a_rejoin_for_a_topic_that_appears_completes_though_every_poll_returns_at_once() -> None:
    """A group leader assigned nothing (its topic did not exist yet) rejoins when the
    topic appears. kafka-python left that rejoin unfinished when the poll that began it
    ran out of time: the consumer never held a partition (0 of 6 tries with polls of
    ``timeout_ms=0``). The tracker's consumers finish it (``infra.kafka.consumer``)."""
    for _ in range(3):
        assignments = assigned_nothing_then_every_partition(polls_timeout_ms=0)
        assert assignments[0] == set(), "the topic did not exist: nothing to assign"
        assert len(assignments[-1]) == PARTITIONS
