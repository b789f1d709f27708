"""A Kafka projector catching up takes the polls that are ready at once into one batch (up to
``MAX_BATCH`` messages); one keeping up stores each poll as it comes, without waiting. It
stores an offender's run of facts (stored together) only once its last message is fetched."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from consumers.projector import KafkaProjector, split_at_open_runs
from consumers.runtime import Shutdown
from consumers.wire import RUN_CONTINUES
from projections.caseload.projection import CaseloadProjection

FIRST, SECOND = TopicPartition("events", 0), TopicPartition("events", 1)


@dataclass(frozen=True)
class Message:
    offset: int
    value: bytes = b"{}"
    key: bytes = b"offender"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


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


def run_of(key: bytes, first: int, count: int, closed: bool = True) -> list[Message]:
    """``count`` messages of the offender ``key`` stored together: each but the last says
    the run continues (the last too, when the run is not ``closed`` in the batch)."""
    return [
        Message(offset, key=key, headers=[RUN_CONTINUES] if n < count - closed else [])
        for n, offset in enumerate(range(first, first + count))
    ]


def split_offsets(batch: dict[Any, list[Message]], full: bool = False) -> tuple[Any, Any]:
    whole, held_back = split_at_open_runs(batch, full)
    return offsets(whole), {tp.partition: held[0].offset for tp, held in held_back.items()}


def test_a_run_whose_last_message_is_in_the_batch_is_stored_whole() -> None:
    batch = {FIRST: run_of(b"a", 0, 3) + run_of(b"b", 3, 2)}
    assert split_offsets(batch) == ({0: [0, 1, 2, 3, 4]}, {})


def test_a_run_whose_last_message_is_not_fetched_yet_is_held_back_from_its_first() -> None:
    batch = {
        FIRST: run_of(b"a", 0, 2) + run_of(b"b", 2, 3, closed=False),
        SECOND: run_of(b"c", 0, 1),
    }
    assert split_offsets(batch) == ({0: [0, 1], 1: [0]}, {0: 2})


def test_a_batch_holding_only_an_unfinished_run_stores_nothing_of_it() -> None:
    assert split_offsets({FIRST: run_of(b"a", 7, 2, closed=False)}) == ({0: []}, {0: 7})


def test_runs_of_other_offenders_after_an_unfinished_run_are_read_again_with_it() -> None:
    # Relays sharing the offenders interleave their runs on a partition.
    batch = {FIRST: [*run_of(b"a", 0, 1, closed=False), *run_of(b"b", 1, 1), *run_of(b"a", 2, 1)]}
    assert split_offsets(batch) == ({0: [0, 1, 2]}, {})
    batch = {FIRST: [*run_of(b"a", 0, 1, closed=False), *run_of(b"b", 1, 1)]}
    assert split_offsets(batch) == ({0: []}, {0: 0})


def test_a_run_sent_again_by_a_restarted_relay_ends_with_its_last_message() -> None:
    sent_twice = [*run_of(b"a", 0, 2, closed=False), *run_of(b"a", 2, 3)]
    assert split_offsets({FIRST: sent_twice}) == ({0: [0, 1, 2, 3, 4]}, {})


def test_messages_without_the_header_each_end_their_run() -> None:
    assert split_offsets({FIRST: messages(0, 3)}) == ({0: [0, 1, 2]}, {})


def test_a_full_batch_holding_only_an_unfinished_run_is_stored_rather_than_read_for_ever() -> None:
    batch = {FIRST: run_of(b"a", 0, 4, closed=False), SECOND: run_of(b"b", 0, 2, closed=False)}
    assert split_offsets(batch, full=True) == ({0: [0, 1, 2, 3], 1: [0, 1]}, {})
    batch = {FIRST: run_of(b"a", 0, 1) + run_of(b"b", 1, 2, closed=False)}
    assert split_offsets(batch, full=True) == ({0: [0]}, {0: 1})


class AssignedConsumer(ScriptedConsumer):
    """A consumer assigned both partitions (or those given)."""

    def __init__(self, *answers: Any, assigned: set[TopicPartition] | None = None) -> None:
        super().__init__(*answers)
        self.assigned = {FIRST, SECOND} if assigned is None else assigned

    def assignment(self) -> set[TopicPartition]:
        return self.assigned


class RecordingProjector(KafkaProjector):
    def __init__(self, consumer: AssignedConsumer) -> None:
        super().__init__(writer=AnyWriter(), consumer=consumer, topic="events")  # type: ignore[arg-type]
        self.projected: list[dict[int, list[int]]] = []
        self.committed: list[dict[int, list[int]]] = []

    def _project(self, polled: Any) -> int:
        self.projected.append(offsets(polled))
        return 0

    def store(self, batch: dict[Any, list[Message]]) -> None:
        projector = self

        class Membership:
            def stored(self, polled: Any) -> None:
                projector.committed.append(offsets(polled))

        self._store_batch(batch, Membership(), Shutdown())  # type: ignore[arg-type]


def test_a_held_back_run_goes_first_in_the_next_batch_and_is_stored_once_whole() -> None:
    projector = RecordingProjector(AssignedConsumer())
    projector.store(
        {FIRST: run_of(b"a", 0, 2) + run_of(b"b", 2, 2, closed=False), SECOND: run_of(b"c", 5, 1)}
    )
    assert projector.projected == projector.committed == [{0: [0, 1], 1: [5]}]
    # The rest of b's run arrives (the consumer is past what was held back: no fetch again).
    projector.store({FIRST: [Message(4, key=b"b")]})
    assert projector.projected[1] == projector.committed[1] == {0: [2, 3, 4]}


def test_a_batch_that_is_all_one_unfinished_run_stores_nothing_until_its_end_comes() -> None:
    projector = RecordingProjector(AssignedConsumer())
    projector.store({FIRST: run_of(b"a", 4, 2, closed=False)})
    projector.store({SECOND: run_of(b"c", 0, 1)})  # other partitions go on meanwhile
    projector.store({FIRST: run_of(b"a", 6, 1)})
    assert projector.projected == [{0: [], 1: [0]}, {0: [4, 5, 6]}]


def test_a_held_back_run_is_dropped_when_its_partition_was_revoked_or_read_again() -> None:
    consumer = AssignedConsumer()
    projector = RecordingProjector(consumer)
    projector.store({FIRST: run_of(b"a", 4, 2, closed=False), SECOND: run_of(b"c", 0, 2, False)})
    consumer.assigned = {SECOND}
    projector.store({SECOND: run_of(b"c", 0, 2)})  # sought back to its stored position: 0
    assert projector.projected == [{1: [0, 1]}]  # once each, nothing of the revoked one
