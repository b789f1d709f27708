"""A Kafka projector catching up takes the polls that are ready at once into one batch (up to
``MAX_BATCH`` messages); one keeping up stores each poll as it comes, without waiting."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from consumers.projector import KafkaProjector
from projections.caseload.projection import CaseloadProjection

FIRST, SECOND = TopicPartition("events", 0), TopicPartition("events", 1)


@dataclass(frozen=True)
class Message:
    offset: int
    value: bytes = b"{}"


def messages(first: int, count: int) -> list[Message]:
    return [Message(offset) for offset in range(first, first + count)]


class ScriptedConsumer:
    """Answers each poll with the next of ``answers`` (an exception is raised); records the
    timeouts it was asked for."""

    def __init__(self, *answers: Any) -> None:
        self._answers: Iterator[Any] = iter(answers)
        self.timeouts: list[int] = []

    def poll(self, timeout_ms: int) -> Any:
        self.timeouts.append(timeout_ms)
        answer: Any = next(self._answers, {})
        if isinstance(answer, Exception):
            raise answer
        return answer


class AnyWriter:
    """A writer of a projection whose cache keeps histories as JSON (most of them)."""

    projection = CaseloadProjection()


def batch_of(consumer: ScriptedConsumer, first_poll: dict[Any, Any]) -> dict[Any, list[Any]]:
    projector = KafkaProjector(writer=AnyWriter(), consumer=consumer, topic="events")  # type: ignore[arg-type]
    return projector._with_what_is_ready(first_poll)


def offsets(batch: dict[Any, list[Any]]) -> dict[int, list[int]]:
    return {tp.partition: [m.offset for m in ms] for tp, ms in batch.items()}


def test_polls_ready_at_once_join_the_batch_in_offset_order_per_partition() -> None:
    consumer = ScriptedConsumer(
        {FIRST: messages(1000, 1000)}, {FIRST: messages(2000, 500), SECOND: messages(7, 3)}, {}
    )
    batch = batch_of(consumer, {FIRST: messages(0, 1000), SECOND: messages(0, 7)})
    assert offsets(batch) == {0: list(range(2500)), 1: list(range(10))}
    assert consumer.timeouts == [0, 0, 0]  # it never waits for more


def test_a_projector_keeping_up_stores_what_came_after_one_poll_that_returns_nothing() -> None:
    consumer = ScriptedConsumer({}, {FIRST: messages(3, 1)})
    batch = batch_of(consumer, {FIRST: messages(0, 3)})
    assert offsets(batch) == {0: [0, 1, 2]}
    assert consumer.timeouts == [0]


def test_a_batch_stops_growing_at_max_batch_messages() -> None:
    polls = KafkaProjector.MAX_BATCH // 1000 + 5  # more than a batch takes
    consumer = ScriptedConsumer(*({FIRST: messages(n * 1000, 1000)} for n in range(1, polls)))
    batch = batch_of(consumer, {FIRST: messages(0, 1000)})
    assert len(batch[FIRST]) == KafkaProjector.MAX_BATCH
    assert len(consumer.timeouts) == KafkaProjector.MAX_BATCH // 1000 - 1


def test_a_poll_that_fails_ends_the_batch_and_keeps_what_was_polled() -> None:
    consumer = ScriptedConsumer({SECOND: messages(0, 2)}, KafkaConnectionError("broker away"))
    batch = batch_of(consumer, {FIRST: messages(0, 4)})
    assert offsets(batch) == {0: [0, 1, 2, 3], 1: [0, 1]}
