"""On the real broker and client: a consumer that stores a batch after a rebalance took
some of its partitions away never commits their offsets, so the group's committed offsets
(its lag, as operators and ``mappa status`` read it) end where the new holder left them."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from kafka import TopicPartition

from consumers.offsets import GroupMembership
from infra import kafka
from infra.kafka import group_lag
from tests.e2e.pipeline import kafka_bootstrap, produce, scratch_topic, wait_until

pytestmark = pytest.mark.e2e

MESSAGES = 40  # a partition, before the rebalance and again after it


class Member:
    """A consumer of the group as the tracker's consumers are (``GroupMembership``), its
    "database" a dict of stored positions shared with the other member."""

    def __init__(self, topic: str, group: str, database: dict[TopicPartition, int]) -> None:
        self.consumer = kafka.consumer(kafka_bootstrap(), group)
        self.database = database
        self.membership = GroupMembership(self.consumer, topic, lambda tp: self.database.get(tp, 0))
        self.revoked = threading.Event()
        # Partitions taken from this member and not given back, and every commit it sent
        # of any of them (the group's offset is not its to move then).
        self.taken: set[TopicPartition] = set()
        self.commits_not_its_own: list[set[TopicPartition]] = []
        listener = self.membership._listener
        on_revoked, on_assigned = listener.on_partitions_revoked, listener.on_partitions_assigned
        commit_async = self.consumer.commit_async

        def revoked(partitions: Any) -> None:
            on_revoked(partitions)
            self.taken.update(partitions)
            if partitions:
                self.revoked.set()

        def assigned(partitions: Any) -> None:
            on_assigned(partitions)
            self.taken.difference_update(partitions)

        def committed(offsets: Any, **kwargs: Any) -> Any:
            if self.taken & set(offsets):
                self.commits_not_its_own.append(self.taken & set(offsets))
            return commit_async(offsets, **kwargs)

        listener.on_partitions_revoked = revoked  # type: ignore[method-assign]
        listener.on_partitions_assigned = assigned  # type: ignore[method-assign]
        self.consumer.commit_async = committed
        self.membership.join()

    def poll(self, timeout_ms: int = 100) -> dict[TopicPartition, list[Any]]:
        return self.consumer.poll(timeout_ms=timeout_ms)  # type: ignore[no-any-return]

    def store(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> None:
        for partition, messages in polled.items():
            self.database[partition] = messages[-1].offset + 1
        self.membership.stored(polled)

    def step(self) -> None:
        """One turn of the projector's loop: poll, then store or be idle."""
        polled = self.poll()
        if polled:
            self.store(polled)
        else:
            self.membership.idle()

    def confirmed(self) -> bool:
        return not self.membership.hints.unconfirmed


def test_a_batch_stored_after_a_rebalance_does_not_take_back_the_new_holders_offsets() -> None:
    with scratch_topic("test-hints") as topic:
        produce(topic, range(MESSAGES))
        group = f"test-hints-{uuid.uuid4().hex[:8]}"
        database: dict[TopicPartition, int] = {}
        first = Member(topic, group, database)
        batch: dict[TopicPartition, list[Any]] = {}

        def holds_everything() -> bool:
            for partition, messages in first.poll().items():
                batch.setdefault(partition, []).extend(messages)
            return sum(map(len, batch.values())) == 2 * MESSAGES

        wait_until(holds_everything, 60, "the first member to poll both partitions", every=0)

        # A second member joins; the first's next poll gives up both partitions, and it
        # stores the batch it polled before (as a projector's polls ready at once can).
        second = Member(topic, group, database)
        stop, second_caught_up = threading.Event(), threading.Event()

        def caught_up(member: Member) -> bool:
            """One turn of the member's loop; then, is all it holds stored and committed?"""
            member.step()
            held = member.consumer.assignment()
            stored = all(database.get(p, 0) == 2 * MESSAGES for p in held)
            return bool(held) and stored and member.confirmed()

        def run_second() -> None:
            while not stop.is_set():
                if caught_up(second):
                    second_caught_up.set()

        worker = threading.Thread(target=run_second, daemon=True)
        worker.start()
        try:
            wait_until(lambda: bool(first.poll()) or first.revoked.is_set(), 60,
                       "the rebalance to take the first member's partitions", every=0)  # fmt: skip
            assert first.revoked.is_set()
            first.store(batch)
            # The rebalance completes (the first member polls, without committing again).
            wait_until(lambda: not first.poll() and len(first.consumer.assignment()) == 1, 60,
                       "the partitions to be shared", every=0)  # fmt: skip
            produce(topic, range(MESSAGES, 2 * MESSAGES))
            # The new holder stores the rest of its partition and its commit is confirmed ...
            wait_until(second_caught_up.is_set, 60, "the second member to catch up", every=0.1)
            # ... then the first stores the rest of its own and commits what it holds.
            wait_until(lambda: caught_up(first), 60, "the first member to catch up", every=0)
            for _ in range(30):  # a few seconds idle: every unconfirmed offset sent again
                first.step()
        finally:
            stop.set()
            worker.join(timeout=30)
            first.consumer.close()
            second.consumer.close()

        assert first.commits_not_its_own == []
        assert second.commits_not_its_own == []
        committed = {p.partition: p.committed for p in group_lag(kafka_bootstrap(), group, [topic])}
        assert committed == {0: 2 * MESSAGES, 1: 2 * MESSAGES}
