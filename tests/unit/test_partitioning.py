"""The tracker's producers partition exactly as Kafka's default partitioner does."""

from __future__ import annotations

import uuid

from kafka.partitioner.default import DefaultPartitioner

from infra.kafka import remembering_partitioner


class Cluster:
    def __init__(self, partitions: int) -> None:
        self.partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions


def test_every_key_goes_to_the_partition_the_default_partitioner_chooses() -> None:
    remembering, default = remembering_partitioner(keys=100), DefaultPartitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(300)] + [b"WM-000001", b"VLO-WM-01"]
    for partitions in (1, 3, 7):
        cluster = Cluster(partitions)
        for key in keys * 2:  # the second time from memory (and past its bound of 100 keys)
            assert remembering.partition("t", key, key, b"", b"", cluster) == (
                default.partition("t", key, key, b"", b"", cluster)
            )


def test_a_message_without_a_key_still_goes_to_some_partition() -> None:
    assert remembering_partitioner().partition("t", None, None, b"", b"", Cluster(3)) in {0, 1, 2}
