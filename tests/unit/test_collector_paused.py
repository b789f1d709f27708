"""A batch runs without the cyclic garbage collector, which runs again after it: the batch's
decoded messages are not walked by every young collection while they are alive."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest
from kafka import TopicPartition

from consumers.projector import KafkaProjector
from consumers.runtime import Shutdown
from infra.process import collector_paused
from projections.caseload.projection import CaseloadProjection


@pytest.fixture(autouse=True)
def collector_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_paused_during_the_block_and_runs_again_after_it() -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_runs_again_after_a_block_that_raised() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the batch failed")
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled_after() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_cyclic_garbage_made_during_a_block_is_collected_after_it() -> None:
    class Node:
        other: Any = None

    with collector_paused():
        first, second = Node(), Node()
        first.other, second.other = second, first
        del first, second
    assert gc.collect() >= 2


class Message:
    key = b"offender"
    headers: list[tuple[str, bytes]] = []

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value = offset, value


class RecordingWriter:
    """A projection writer that records whether the collector ran while it stored."""

    projection = CaseloadProjection()

    def __init__(self) -> None:
        self.collector_enabled: list[bool] = []

    def handle_all(self, batches: Mapping[str, Sequence[Any]]) -> int:
        self.collector_enabled.append(gc.isenabled())
        return sum(map(len, batches.values()))


class NothingMoreReady:
    def poll(self, timeout_ms: int) -> dict[Any, Any]:
        return {}


class RecordingMembership:
    def __init__(self) -> None:
        self.stored_batches: list[Any] = []

    def stored(self, batch: Any) -> None:
        self.stored_batches.append(batch)


def test_a_kafka_projector_stores_a_batch_with_the_collector_paused() -> None:
    writer = RecordingWriter()
    projector = KafkaProjector(writer, consumer=NothingMoreReady(), topic="events")  # type: ignore[arg-type]
    value = orjson.dumps(
        {"wire": 1, "offenderId": "00000000-0000-0000-0000-000000000001", "version": 1,
         "topic": "mappa.unknown.v1", "recordedAt": "2024-01-01T00:00:00+00:00", "fields": {}}
    )  # fmt: skip
    membership = RecordingMembership()
    batch = {TopicPartition("events", 0): [Message(0, value)]}
    projector._store_batch(batch, membership, Shutdown())  # type: ignore[arg-type]
    assert writer.collector_enabled == [False]
    assert membership.stored_batches == [batch]
    assert gc.isenabled()
