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
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic

from consumers.offsets import GroupMembership
from infra import kafka
from infra.kafka import admin_client
from tests.e2e.pipeline import kafka_bootstrap, wait_until

pytestmark = pytest.mark.e2e

PARTITIONS = 6


def test_a_consumer_joining_before_its_topic_exists_is_first_assigned_every_partition() -> None:
    topic = f"test-join-{uuid.uuid4().hex[:12]}"
    consumer = kafka.consumer(kafka_bootstrap(), f"test-join-{uuid.uuid4().hex[:8]}")
    membership = GroupMembership(consumer, topic, stored=lambda _: 0)
    assignments: list[set[TopicPartition]] = []
    record = membership._listener.on_partitions_assigned

    def recorded(partitions: Any) -> None:
        assignments.append(set(partitions))
        record(partitions)

    membership._listener.on_partitions_assigned = recorded  # type: ignore[method-assign]

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
