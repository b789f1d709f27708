"""A batch that stalls the pipeline is logged with where its time went, so that whoever
reads the log can tell a slow decision from a slow store or a slow broker."""

from __future__ import annotations

import time
from collections import namedtuple
from typing import Any

from kafka import TopicPartition
from structlog.testing import capture_logs

from consumers.inbound import InboundConsumer
from consumers.ingest import Result, Verdict

Message = namedtuple("Message", "offset key value")

DOCUMENT = (
    b'{"eventId":"e-1","eventType":"mappa.category-assigned","version":1,'
    b'"occurredAt":"2001-04-01T11:06:00+01:00","source":{"agency":"mappa-coordinator",'
    b'"system":"ViSOR","user":"u-1"},"personReference":{"identifiers":[{"type":"MAPPA",'
    b'"value":"SUS-015992"}]},"area":"SUS","additionalInformation":{"category":3}}'
)


class SlowStore:
    """An ingest service whose store takes ``seconds`` to commit."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.records = self
        self.last_timings: dict[str, float] = {}

    def position(self, upstream: str) -> int:
        return 0

    def ingest(self, batch: Any, tracking: Any = None, before_commit: Any = None) -> list[Result]:
        time.sleep(self.seconds)
        self.last_timings = {"decide": 0.001, "before_commit": 0.0, "store": self.seconds,
                             "attempts": 1}  # fmt: skip
        return [Result(item, Verdict.ACCEPTED, "e-1") for item, _ in batch]


def ingest_one(seconds: float) -> list[dict[str, Any]]:
    consumer = InboundConsumer(SlowStore(seconds), None, None, "inbound", "dead-letters")  # type: ignore[arg-type]
    with capture_logs() as logs:
        consumer.ingest_polled({TopicPartition("inbound", 0): [Message(0, b"k", DOCUMENT)]})
    return [entry for entry in logs if entry["event"] == "slow batch"]


def test_a_batch_slower_than_half_a_second_is_logged_with_the_time_of_each_step() -> None:
    (entry,) = ingest_one(InboundConsumer.SLOW_BATCH_SECONDS + 0.05)
    assert entry["log_level"] == "warning" and entry["messages"] == 1
    assert entry["store_ms"] >= 500 and entry["decide_ms"] == 1 and entry["attempts"] == 1
    assert entry["ms"] >= entry["store_ms"]


def test_a_batch_in_good_time_is_not_logged() -> None:
    assert ingest_one(0.0) == []
