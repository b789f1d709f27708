"""A harness for end-to-end tests of the production pipeline on the real broker and database.

Each :class:`Pipeline` has its own topic prefix, consumer groups and PostgreSQL schema, and
runs the tracker's processes as real subprocesses (``mappa run ...``), so tests can kill
them with SIGKILL and restart them like an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumers.relay import relayed_everything
from infra.bootstrap import Tracker, bootstrap, topics
from infra.kafka import admin_client, delete_topics, group_lag, topics_named_from
from infra.settings import Settings
from tests.conftest import _create_schema, _drop_schema, database_url_for_tests

MAPPA = str(Path(sys.executable).with_name("mappa"))
PROJECTIONS = ("caseload", "statistical-return", "victim-alerts", "data-quality")


def kafka_bootstrap() -> str:
    return os.environ.get("MAPPA_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Pipeline:
    workdir: Path
    name: str = field(default_factory=lambda: f"e2e_{uuid.uuid4().hex[:10]}")
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return Settings(
            data_dir=self.workdir / "data",
            database_url=database_url_for_tests(),
            database_schema=self.name,
            kafka_bootstrap=kafka_bootstrap(),
            kafka_topic_prefix=f"{self.name}.",
            batch_size=200,
        )

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            MAPPA_DATA_DIR=str(s.data_dir),
            MAPPA_DATABASE_URL=str(s.database_url),
            MAPPA_DATABASE_SCHEMA=s.database_schema,
            MAPPA_KAFKA_BOOTSTRAP=str(s.kafka_bootstrap),
            MAPPA_KAFKA_TOPIC_PREFIX=s.kafka_topic_prefix,
            MAPPA_BATCH_SIZE=str(s.batch_size),
            MAPPA_LOG_FORMAT="json",
        )
        return env

    def start(self, process: str, *args: str, label: str | None = None) -> None:
        label = label or " ".join((process, *args))
        log = (self.workdir / f"{label.replace(' ', '-')}.log").open("ab")
        self.processes[label] = subprocess.Popen(
            [MAPPA, "run", process, *args], env=self.environment(), stdout=log, stderr=log
        )

    def start_all(self, projector_instances: int = 1) -> None:
        self.start("ingest")
        self.start("relay")
        for name in PROJECTIONS:
            for instance in range(projector_instances):
                self.start("project", name, label=f"project {name} {instance}")
        self.start("publish-alerts")

    def kill(self, label: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(label)
        process.send_signal(sig)
        process.wait(timeout=60)

    def stop_all(self) -> None:
        """SIGTERM every process; each must finish its batch and exit cleanly (status 0)."""
        failed = []
        for label in list(self.processes):
            process = self.processes[label]
            self.kill(label, signal.SIGTERM)
            if process.returncode != 0:
                failed.append(f"{label} exited with {process.returncode}: {self.log(label)}")
        assert not failed, "\n".join(failed)

    def assert_running(self) -> None:
        for label, process in self.processes.items():
            assert process.poll() is None, f"{label} exited with {process.returncode}: " + self.log(
                label
            )

    def log(self, label: str, chars: int | None = 3000) -> str:
        """The end of a process's log (``chars`` None: all of it)."""
        path = self.workdir / f"{label.replace(' ', '-')}.log"
        text = path.read_text() if path.exists() else ""
        return text if chars is None else text[-chars:]

    def mappa(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [MAPPA, *args], env=self.environment(), input=stdin, capture_output=True, check=False
        )

    def delete_topics(self) -> None:
        """Delete every topic of this pipeline (its prefix), so that runs of the suite do
        not leave the broker hundreds of topics."""
        delete_topics(kafka_bootstrap(), topics_named_from(kafka_bootstrap(), f"{self.name}."))

    @classmethod
    @contextmanager
    def running_in(cls, workdir: Path) -> Iterator[Pipeline]:
        """A pipeline with a schema of its own; afterwards every process is stopped, and
        the schema and the topics dropped, whatever happened."""
        pipeline = cls(workdir)
        _create_schema(pipeline.name)
        try:
            yield pipeline
        finally:
            try:
                pipeline.stop_all()
            finally:
                _drop_schema(pipeline.name)
                pipeline.delete_topics()

    def tracker(self) -> Tracker:
        return bootstrap(self.settings)

    def settled(self, projections: tuple[str, ...] = PROJECTIONS, relays: int = 1) -> bool:
        """Everything sent has been ingested, relayed (by ``relays`` processes) and
        projected by ``projections``."""
        return self.behind(projections, relays) is None

    def behind(self, projections: tuple[str, ...] = PROJECTIONS, relays: int = 1) -> str | None:
        """The first stage that has not caught up with what was sent, or None."""
        self.assert_running()
        names = topics(self.settings)
        if lag := self.lag("ingest", names.inbound):
            return f"ingest: {lag} inbound messages behind (committed offsets)"
        tracker = self.tracker()
        try:
            if not relayed_everything(tracker.records, tracker.views, relays):
                return f"relay ({relays} processes): stored events not yet published"
        finally:
            tracker.close()
        for projection in projections:
            if lag := self.lag(f"projector-{projection}", names.offender_events):
                return f"projector {projection}: {lag} messages behind (committed offsets)"
        return None

    def wait_until_settled(
        self,
        timeout: float,
        what: str = "the pipeline to settle",
        projections: tuple[str, ...] = PROJECTIONS,
        relays: int = 1,
    ) -> None:
        """Wait until :meth:`settled`; if it never is, say which stage is behind, with the
        end of every process's log."""
        try:
            wait_until(lambda: self.settled(projections, relays), timeout, what)
        except AssertionError as timed_out:
            logs = "\n".join(f"--- {label}:\n{self.log(label, 1500)}" for label in self.processes)
            raise AssertionError(
                f"{timed_out}; still behind: {self.behind(projections, relays)}\n"
                f"{self._diagnosis_or_why_not(projections)}\n{logs}"
            ) from None

    def _diagnosis_or_why_not(self, projections: tuple[str, ...]) -> str:
        # The timeout is what the test reports: a diagnosis that fails must not hide it.
        try:
            return self.diagnosis(projections)
        except Exception as error:
            return f"(no diagnosis: {error!r})"

    def diagnosis(self, projections: tuple[str, ...] = PROJECTIONS) -> str:
        """For a pipeline that did not settle: each projector group's partitions (offset
        committed to Kafka, position stored in the database, end of the partition), and
        what every database session of the tracker is doing (a lock wait shows here)."""
        import psycopg

        names = topics(self.settings)
        lines = []
        with psycopg.connect(database_url_for_tests(), autocommit=True) as conn:
            for projection in projections:
                stored = dict(
                    conn.execute(
                        f'SELECT upstream, position FROM "{self.name}".projection_positions '
                        "WHERE projection = %s",
                        (projection,),
                    ).fetchall()
                )
                group = names.group(f"projector-{projection}")
                partitions = group_lag(kafka_bootstrap(), group, [names.offender_events])
                lines.append(
                    f"{projection}: "
                    + ", ".join(
                        f"p{p.partition} committed={p.committed} "
                        f"stored={stored.get(f'{p.topic}-{p.partition}')} end={p.end}"
                        for p in partitions
                    )
                )
            for row in conn.execute(
                "SELECT pid, application_name, state, wait_event_type, wait_event, "
                "now() - xact_start, left(query, 120) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND state IS DISTINCT FROM 'idle'"
            ):
                lines.append("session " + " | ".join(map(str, row)))
        return "\n".join(lines)

    def lag(self, process: str, topic: str) -> int:
        names = topics(self.settings)
        return sum(p.lag for p in group_lag(kafka_bootstrap(), names.group(process), [topic]))


def produce(topic: str, per_partition: range, partitions: int = 2) -> None:
    """Messages ``<partition>-<number>`` for each number of ``per_partition``, on each
    partition, through kafka-python."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap())
    try:
        for partition in range(partitions):
            for number in per_partition:
                producer.send(topic, f"{partition}-{number}".encode(), partition=partition)
        producer.flush()
    finally:
        producer.close()


@contextmanager
def scratch_topic(prefix: str, partitions: int = 2) -> Iterator[str]:
    """A topic of its own for a test, deleted afterwards."""
    from kafka.admin import NewTopic

    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    with admin_client(kafka_bootstrap()) as admin:
        # Handed to the test only once the broker's metadata shows its partitions, as the
        # pipeline's own topics are (``ensure_topics``): a group joined before that is
        # assigned none of them until its next metadata refresh, minutes later.
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)],
            wait_for_metadata=True,
        )
        yield name
        admin.delete_topics([name])


def kcat_producer(topic: str) -> list[str]:
    """kcat producing tab-keyed lines with Kafka's default partitioner (murmur2), as the
    README asks of every agency's producer: librdkafka's own default (CRC32) would put
    an offender's documents on another partition than kafka-python or Java clients do,
    so they could reach the tracker out of order."""
    return [
        "kcat", "-P", "-b", kafka_bootstrap(), "-t", topic, "-K", "\t",
        "-X", "acks=all", "-X", "topic.partitioner=murmur2_random",
    ]  # fmt: skip


def send_with_kcat(pipeline: Pipeline, lines: list[str]) -> None:
    """Produce lines to the inbound topic with kcat, an independent client (key: MAPPA ref)."""
    keyed = []
    for line in lines:
        try:
            identifiers = json.loads(line)["personReference"]["identifiers"]
            key = next(i["value"] for i in identifiers if i["type"] == "MAPPA")
        except Exception:
            key = "unreadable"
        keyed.append(f"{key}\t{line}")
    topic = topics(pipeline.settings).inbound
    subprocess.run(
        kcat_producer(topic),
        input=("\n".join(keyed) + "\n").encode(),
        check=True,
        timeout=120,
    )


def consume_all(pipeline: Pipeline, topic: str, read_committed: bool = True) -> list[Any]:
    """Every message of ``topic`` now, through kafka-python."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap(),
        enable_auto_commit=False,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        messages: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(p) < ends[p] for p in partitions):
            for batch in consumer.poll(timeout_ms=500).values():
                messages.extend(batch)
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
        return messages
    finally:
        consumer.close()
