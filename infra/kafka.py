"""Kafka for the production pipeline: topic names, topic creation, clients, lag.

Topic names are versioned (``.v1``): a change of message format gets a new topic, so old
and new consumers can run side by side. Every topic is created by the tracker with an
explicit partition count, never by the broker's auto-creation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Topics:
    """The pipeline's topics and consumer groups; ``prefix`` isolates test runs."""

    prefix: str = ""
    # Six: the consumers of a group (`mappa run ingest --processes N`, likewise a projector)
    # share the partitions evenly when there are 1, 2, 3 or 6 of them. An offender's
    # messages stay on one partition (keyed by offender), so they stay in order.
    inbound_partitions: int = 6
    offender_events_partitions: int = 6
    victim_alerts_partitions: int = 3

    @property
    def inbound(self) -> str:
        return f"{self.prefix}mappa.inbound.v1"

    @property
    def inbound_dead_letters(self) -> str:
        return f"{self.prefix}mappa.inbound.dead-letters.v1"

    @property
    def offender_events(self) -> str:
        return f"{self.prefix}mappa.offender-events.v1"

    @property
    def victim_alerts(self) -> str:
        return f"{self.prefix}mappa.victim-alerts.v1"

    def group(self, process: str) -> str:
        """The consumer group of a process: ``ingest`` or ``projector-<name>``."""
        return f"{self.prefix}mappa.{process}"

    def partitions(self) -> dict[str, int]:
        return {
            self.inbound: self.inbound_partitions,
            self.inbound_dead_letters: 1,
            self.offender_events: self.offender_events_partitions,
            self.victim_alerts: self.victim_alerts_partitions,
        }


@contextmanager
def admin_client(bootstrap: str, **config: Any) -> Iterator[Any]:
    """A Kafka admin client, closed after use."""
    from kafka.admin import KafkaAdminClient

    config.setdefault("client_id", "mappa-admin")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **config)
    try:
        yield admin
    finally:
        admin.close()


def ensure_topics(bootstrap: str, topics: Topics) -> None:
    """Create the pipeline's topics if missing (idempotent), and wait until they are usable."""
    from kafka.errors import TopicAlreadyExistsError

    with admin_client(bootstrap) as admin:
        existing = set(admin.list_topics())
        wanted = {
            name: {"num_partitions": count, "replication_factor": 1}
            for name, count in topics.partitions().items()
            if name not in existing
        }
        if wanted:
            try:
                admin.create_topics(wanted, wait_for_metadata=True)
                log.info("topics created", topics=sorted(wanted))
            except TopicAlreadyExistsError:
                pass  # another process created them first


PRODUCER_BATCH_BYTES = 256 * 1024


def producer(bootstrap: str, **config: Any) -> Any:
    """A producer that keeps each key's order and loses nothing (idempotent, acks=all)."""
    from kafka import KafkaProducer

    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "partitioner": remembering_partitioner(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "retries": 2**31 - 1,
        # kafka-python's default (16 KiB) holds some 30 of the tracker's messages, and its
        # cost per batch (a new batch, a wakeup of the sender, a request) then outweighs
        # the messages': measured here, producing a ~530-byte message took 40-50 us of CPU
        # with 16 KiB batches and 20 us with 64 KiB or more. A batch is sent when full or
        # after linger_ms, so a larger one adds no latency. Well under the broker's 1 MiB.
        "batch_size": PRODUCER_BATCH_BYTES,
    }
    settings.update(config)
    return KafkaProducer(**settings)


def remembering_partitioner(keys: int = 250_000) -> Any:
    """Kafka's default partitioning (murmur2 of the key, as the Java client and the broker's
    tools do), remembering each key's hash.

    kafka-python computes murmur2 in pure Python, some 17 us a message: a third of the
    relay's time. The tracker's keys (offender ids, MAPPA references, VLOs) recur, so each
    is hashed once. The partition is the default partitioner's, exactly.
    """
    from kafka.partitioner.default import DefaultPartitioner, murmur2

    class RememberingPartitioner(DefaultPartitioner):
        def __init__(self) -> None:
            self._hashes: dict[bytes, int] = {}

        def partition(
            self, topic: str, key: Any, serialized_key: bytes | None, value: Any,
            serialized_value: Any, cluster: Any,
        ) -> int:  # fmt: skip
            if serialized_key is None or topic not in cluster.topics():
                return int(super().partition(
                    topic, key, serialized_key, value, serialized_value, cluster
                ))  # fmt: skip
            hashed = self._hashes.get(serialized_key)
            if hashed is None:
                if len(self._hashes) >= keys:
                    self._hashes.clear()
                hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
            partitions = sorted(cluster.partitions_for_topic(topic))
            return int(partitions[hashed % len(partitions)])

    return RememberingPartitioner()


def consumer(bootstrap: str, group: str | None, **config: Any) -> Any:
    """A consumer in ``group`` (None: no group) committing offsets only when told to."""
    from kafka import KafkaConsumer

    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": 1000,
        "isolation_level": "read_committed",
        # kafka-python fetches only the partitions with nothing buffered, so a message for
        # a partition left out of the fetch in flight waits until that fetch ends: up to
        # fetch_max_wait_ms (500 by default). At 100 ms, 1,000 messages/s arrive with a p99 of
        # 8 ms instead of 89 ms; an idle consumer sends ten fetches a second.
        "fetch_max_wait_ms": 100,
    }
    settings.update(config)
    created = KafkaConsumer(**settings)
    if group is not None:
        _rejoin_until_joined(created._coordinator)
    return created


def _rejoin_until_joined(coordinator: Any) -> None:
    """Make a consumer's group coordinator finish a rejoin that a metadata change began
    (the fix of KAFKA-9815 in the Java client, missing from kafka-python 3.0).

    kafka-python rejoins when the metadata its leader assigned from no longer matches the
    cluster's; nothing else records that a rejoin is under way. A poll whose time runs out
    leaves the join in flight for the next poll to take up, but once the new assignment is
    made the two match again, so the next poll sees nothing to do: the assignment is never
    applied, and the consumer holds no partitions for good (CI's hung test; a consumer
    polling with ``timeout_ms=0`` after joining before its metadata showed the topic got
    its partitions in 0 of 6 tries). Recording the rejoin as needed, as Java's coordinator
    does, keeps every poll at it until the join completes, which clears the flag.
    """
    as_the_library_decides = type(coordinator).need_rejoin

    def need_rejoin() -> bool:
        # Whatever the reason (metadata, subscription or the flag itself), as Java's
        # ``requestRejoin`` does: the flag outlives the reason until the join completes.
        if as_the_library_decides(coordinator):
            coordinator.rejoin_needed = True
            return True
        return False

    coordinator.need_rejoin = need_rejoin


def await_own_metadata(subscribed: Any, topic: str, deadline: float) -> bool:
    """Wait (until ``deadline``, a ``time.monotonic()``) for the consumer's own metadata to
    show the partitions of ``topic``, which it already subscribes to. False if it never did.

    kafka-python makes a subscribed consumer join its group at its first poll without
    waiting for its metadata (it waits only for a pattern's, KAFKA-3949). A group leader
    whose metadata still lacks the topic assigns nobody any partition and must rejoin when
    they appear (see ``_rejoin_until_joined`` for how that rejoin could hang); another
    client seeing the topic (the broker knows it) does not mean this one does yet.

    Asked through the client's own metadata future (kafka-python 3.0's private ``_cluster``,
    ``_manager`` and ``_net``): its one public call that fetches metadata,
    ``partitions_for_topic``, fills it with every topic of the cluster, and the next refresh
    (of the subscribed topic alone) looked like a metadata change to the coordinator.
    """
    from kafka.errors import KafkaError

    cluster, manager, net = subscribed._cluster, subscribed._manager, subscribed._net
    while not cluster.partitions_for_topic(topic):
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms <= 0:
            return False
        try:
            net.run(manager.wait_for, cluster.request_update(), remaining_ms)
        except KafkaError as error:  # a timeout or a failed refresh: the loop decides
            log.debug("metadata refresh not answered", topic=topic, error=repr(error))
        if not cluster.partitions_for_topic(topic):
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return True


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed or 0)


def group_lag(bootstrap: str, group: str, topic_names: Iterable[str]) -> list[PartitionLag]:
    """Each partition's committed offset for ``group`` and how far behind the end it is."""
    from kafka import KafkaConsumer, TopicPartition

    with admin_client(bootstrap, client_id="mappa-status") as admin:
        committed = while_the_coordinator_loads(
            lambda: admin.list_group_offsets({group: None})
        ).get(group, {})
    probe = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topic_names
            for p in sorted(probe.partitions_for_topic(topic) or ())
        ]
        ends = probe.end_offsets(partitions) if partitions else {}
    finally:
        probe.close()
    return [
        PartitionLag(
            tp.topic,
            tp.partition,
            committed[tp].offset if tp in committed else None,
            int(ends.get(tp, 0)),
        )
        for tp in partitions
    ]


def while_the_coordinator_loads(ask: Callable[[], T], within_seconds: float = 20.0) -> T:
    """``ask()``, asked again while the broker says a group's coordinator is not ready.

    A group's coordinator is the leader of its partition of ``__consumer_offsets``. A fresh
    broker creates that topic on the first question about any group and answers "coordinator
    not available" until it is ready (CI's first lag query failed so, 0.3 s after start); a
    restarting broker answers "loading" while it reads the offsets back. The admin client
    does not retry those, its consumers do. Other errors, and these after ``within_seconds``,
    are raised.
    """
    from kafka.errors import (
        CoordinatorLoadInProgressError,
        CoordinatorNotAvailableError,
        NotCoordinatorError,
    )

    deadline = time.monotonic() + within_seconds
    pause = 0.1
    while True:
        try:
            return ask()
        except (
            CoordinatorNotAvailableError,
            CoordinatorLoadInProgressError,
            NotCoordinatorError,
        ) as error:
            if time.monotonic() + pause > deadline:
                raise
            log.info("group coordinator not ready; asking again", error=type(error).__name__)
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def group_members(bootstrap: str, groups: Sequence[str]) -> dict[str, int]:
    """How many members each consumer group has now (0: none, or no such group)."""
    # A command asking, not a server waiting: a broker away is said after 10 s, not 30.
    with admin_client(bootstrap, bootstrap_timeout_ms=10_000) as admin:
        described = while_the_coordinator_loads(lambda: admin.describe_groups(list(groups)))
    return {group: len(described.get(group, {}).get("members") or ()) for group in groups}


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete those of these topics that exist."""
    with admin_client(bootstrap) as admin:
        existing = set(admin.list_topics())
        doomed = [name for name in names if name in existing]
        if doomed:
            admin.delete_topics(doomed)


def topics_named_from(bootstrap: str, prefix: str) -> list[str]:
    """The broker's topics whose names begin with ``prefix``."""
    with admin_client(bootstrap) as admin:
        return sorted(name for name in admin.list_topics() if name.startswith(prefix))
