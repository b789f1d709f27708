"""scripts/kafka runs a real broker that stores and delivers messages, and starts idempotently.

The suite's runner starts the broker (``scripts/kafka start``) before pytest; these tests
fail, never skip, when it is not running.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "kafka"
BOOTSTRAP = os.environ.get(
    "MAPPA_TEST_KAFKA_BOOTSTRAP", f"127.0.0.1:{os.environ.get('MAPPA_KAFKA_PORT', '9092')}"
)


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module", autouse=True)
def broker_running() -> None:
    status = _script("status", timeout=60)
    if status.returncode != 0:
        pytest.fail(
            f"the Kafka broker is not running (scripts/kafka status exited {status.returncode}: "
            f"{(status.stdout + status.stderr).strip()}); start it with scripts/kafka start",
            pytrace=False,
        )


@pytest.fixture
def topic() -> Iterator[str]:
    name = f"test-broker-script-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="test-broker-script")
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
        yield name
        admin.delete_topics([name])
    finally:
        admin.close()


def test_broker_stores_three_messages_and_delivers_them_in_order_to_a_consumer_group(
    topic: str,
) -> None:
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    try:
        for value in (b"first", b"second", b"third"):
            producer.send(topic, key=b"offender-1", value=value).get(timeout=30)
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[bytes] = []
    try:
        deadline = time.monotonic() + 60
        while len(received) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=1000).values():
                received.extend(record.value for record in records)
        consumer.commit()
    finally:
        consumer.close()

    assert received == [b"first", b"second", b"third"]


def test_starting_the_broker_again_while_it_runs_returns_at_once() -> None:
    started = time.monotonic()
    result = _script("start", timeout=60)
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 10, f"scripts/kafka start took {elapsed:.1f}s while the broker was up"
    assert _script("status", timeout=60).returncode == 0


def test_topics_named_from_a_prefix_are_listed_and_deleted() -> None:
    from infra.kafka import delete_topics, topics_named_from

    prefix = f"test-prefix-{uuid.uuid4().hex[:8]}."
    names = [f"{prefix}a", f"{prefix}b"]
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, client_id="test-broker-script")
    try:
        admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
    finally:
        admin.close()
    assert topics_named_from(BOOTSTRAP, prefix) == names
    delete_topics(BOOTSTRAP, [*names, f"{prefix}never-made"])
    deadline = time.monotonic() + 30
    while topics_named_from(BOOTSTRAP, prefix) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topics_named_from(BOOTSTRAP, prefix) == []
