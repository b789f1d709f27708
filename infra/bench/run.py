"""The benchmark's phases, in order, on one isolated schema and topic prefix.

1. the history (cached), produced to ``mappa.inbound.v1`` except a held-back tail;
2. ``ingest`` catches up on it: events stored per second;
3. ``relay`` publishes every stored event: events per second;
4. each ``project NAME`` catches up on ``mappa.offender-events.v1``, one at a time; then
   ``publish-alerts`` publishes the alerts raised so far;
5. alert latency: ingest, relay, the victim-alerts projector and the publisher run together
   while the held-back tail is offered at a steady rate; each alert's latency is the time it
   was consumed (read-committed) minus the time its triggering line was produced;
6. a full rebuild of every projection from the event store (a subprocess, for its memory);
7. one area's return and the national tables from the read model;
8. the peer (the library's ``ProjectionRunner``) and the anchors;
9. the report.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import math
import os
import shlex
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from infra.bench import anchors, history, peer, report, system
from infra.bench.report import Figures, Target
from infra.bootstrap import Tracker, bootstrap
from infra.kafka import Topics, delete_topics, ensure_topics
from infra.logs import configure_logging
from infra.process import tune_garbage_collection
from infra.rebuild import default_jobs, rebuild_projections
from infra.settings import Settings

log = structlog.get_logger("bench")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_URL = "postgresql://mappa:mappa@127.0.0.1:5432/mappa"
DEFAULT_KAFKA = "127.0.0.1:9092"
GIB_IN_MIB = 1024


@dataclass
class Options:
    quick: bool
    offenders: int
    first_year: int
    last_year: int
    seed: int
    output_dir: Path
    rate: int
    steady_seconds: float
    peer_seconds: float
    anchor_rows: int
    batch_size: int
    cache_dir: Path
    keep: bool
    profile: bool
    timeout: float
    # Copies of ingest and of each projector in the catch-up phases (one consumer group).
    processes: int = 1
    argv: list[str] = field(default_factory=list)


def parse_options(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure the tracker's pipeline against its anchors; write BENCHMARKS.md "
        "and benchmarks.json.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small history and short phases (a smoke test, under 5 minutes)",
    )
    parser.add_argument(
        "--offenders",
        type=int,
        help="offenders in the national history (default 90,000; --quick 2,000)",
    )
    parser.add_argument(
        "--years",
        help="reporting years FIRST-LAST (default 2001-2010, ten years; --quick 2006-2008)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where BENCHMARKS.md and "
        "benchmarks.json go (default: the repository root; --quick: run/bench/quick)",
    )
    parser.add_argument(
        "--rate",
        type=int,
        help="events/s offered for the alert latency (default 1000; --quick 200)",
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        help="how long the steady load is offered (default 60; --quick 15)",
    )
    parser.add_argument(
        "--peer-seconds",
        type=float,
        help="how long the library's ProjectionRunner runs (default 20; --quick 5)",
    )
    parser.add_argument(
        "--anchor-rows",
        type=int,
        help="rows and messages per anchor (default 200,000; --quick 20,000)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        help="copies of ingest and of each projector in their catch-up phases, sharing the "
        "topic's partitions in one consumer group, and of the relay, each publishing a share "
        "of the offenders (`mappa run ... --processes N`; default: one per core; --profile: "
        "1, as only the first process is profiled)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="MAPPA_BATCH_SIZE")
    parser.add_argument("--cache-dir", type=Path, default=REPO / "run" / "bench" / "cache")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the schema and topics afterwards (default: drop them)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the processes under cProfile "
        "and append where their time goes (slows them down: figures are not "
        "comparable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=7200,
        help="seconds any one phase may take before the run fails",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    years = args.years or ("2006-2008" if quick else "2001-2010")
    first, _, last = years.partition("-")
    output = args.output_dir or (REPO / "run" / "bench" / "quick" if quick else REPO)
    return Options(
        quick=quick,
        offenders=args.offenders or (2_000 if quick else 90_000),
        first_year=int(first),
        last_year=int(last or first),
        seed=args.seed,
        output_dir=output.resolve(),
        rate=args.rate or (200 if quick else 1_000),
        steady_seconds=args.steady_seconds or (15 if quick else 60),
        peer_seconds=args.peer_seconds or (5 if quick else 20),
        anchor_rows=args.anchor_rows or (20_000 if quick else 200_000),
        batch_size=args.batch_size,
        cache_dir=args.cache_dir.resolve(),
        keep=args.keep,
        profile=args.profile,
        timeout=args.timeout,
        processes=args.processes or (1 if args.profile else os.cpu_count() or 1),
        argv=argv,
    )


# --- progress of a catch-up ---------------------------------------------------------------


@dataclass
class Progress:
    """Samples of (time, done) while a process catches up on ``total``."""

    started: float
    total: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def finished(self) -> float:
        return self.samples[-1][0]

    def rate(self, counted: Callable[[int], float] | None = None) -> float:
        """Per second from the first sample showing progress to the end: start-up (imports,
        connections, the consumer group's join) is left out of the rate.

        ``counted`` turns "done" into what is counted (e.g. positions into events stored).
        """
        count = counted or float
        baseline = self.samples[0][1]
        first = next(((t, n) for t, n in self.samples if n > baseline), None)
        end_t, end_n = self.samples[-1]
        if first is None or end_t - first[0] < 0.5:
            # Finished within a sample or two: the whole time from the start is all we know.
            return (count(end_n) - count(baseline)) / max(end_t - self.started, 1e-9)
        return (count(end_n) - count(first[1])) / (end_t - first[0])

    def wall_seconds(self) -> float:
        return self.finished - self.started


def follow(
    measure: Callable[[], int],
    total: int,
    processes: system.Processes,
    labels: Iterable[str],
    timeout: float,
    what: str,
    every: float = 0.25,
) -> Progress:
    """Sample ``measure()`` until it reaches ``total``; fail if a process dies."""
    labels = list(labels)
    progress = Progress(time.monotonic(), total)
    deadline = progress.started + timeout
    last_report = progress.started
    while True:
        done = retrying(measure, what)
        now = time.monotonic()
        progress.samples.append((now, done))
        if done >= total:
            return progress
        processes.check_alive(*labels)
        if now > deadline:
            raise TimeoutError(f"{what}: {done:,} of {total:,} after {timeout:.0f}s")
        if now - last_report > 15:
            log.info("progress", phase=what, done=done, total=total)
            last_report = now
        time.sleep(every)


T = TypeVar("T")
# What the bench's own queries had to retry (a server restarted by other work on the machine).
RETRIED: list[str] = []


def retrying(action: Callable[[], T], what: str, patience: float = 120) -> T:
    """``action()``, again after a pause while it fails: the bench shares the database and
    the broker with other work on the machine, which may restart them (the processes under
    test retry by themselves; the bench's own queries must too)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return action()
        except Exception as error:
            if time.monotonic() > deadline:
                raise
            log.warning("retrying", action=what, error=repr(error))
            RETRIED.append(f"{what}: {error!r}")
            time.sleep(1)


# --- the run ------------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.name = f"bench_{uuid.uuid4().hex[:8]}"
        self.workdir = REPO / "run" / "bench" / self.name
        self.database_url = os.environ.get("MAPPA_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
        self.kafka = os.environ.get("MAPPA_BENCH_KAFKA_BOOTSTRAP", DEFAULT_KAFKA)
        self.settings = Settings(
            data_dir=self.workdir / "data",
            database_url=self.database_url,
            database_schema=self.name,
            kafka_bootstrap=self.kafka,
            kafka_topic_prefix=f"{self.name}.",
            batch_size=options.batch_size,
        )
        self.topics = Topics(prefix=self.settings.kafka_topic_prefix)
        self.figures = Figures()
        self.cpu: dict[str, dict[str, float]] = {}
        self.details: dict[str, Any] = {}
        self.errors: list[str] = []
        self.tracker: Tracker | None = None
        self.processes = system.Processes(self._environment(), self.workdir / "logs")
        self.profiles: dict[str, Path] = {}
        self.started = time.monotonic()
        self.history: history.History | None = None
        self.bulk_lines = 0
        self.steady_lines = 0

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        env.update(
            MAPPA_DATA_DIR=str(s.data_dir),
            MAPPA_DATABASE_URL=self.database_url,
            MAPPA_DATABASE_SCHEMA=s.database_schema,
            MAPPA_KAFKA_BOOTSTRAP=self.kafka,
            MAPPA_KAFKA_TOPIC_PREFIX=s.kafka_topic_prefix,
            MAPPA_BATCH_SIZE=str(s.batch_size),
            MAPPA_LOG_FORMAT="json",
            MAPPA_LOG_LEVEL="info",
        )
        return env

    # --- figures ------------------------------------------------------------------------

    def define_figures(self, projections: list[str]) -> None:
        f = self.figures
        events_s = "events/s"
        f.define("anchor.pg_copy", "PostgreSQL COPY (anchor)", "rows/s")
        f.define("anchor.pg_insert", "PostgreSQL batched INSERT (anchor)", "rows/s")
        f.define("anchor.kafka_produce", "kafka-python produce (anchor)", "msgs/s")
        f.define("anchor.kafka_consume", "kafka-python consume (anchor)", "msgs/s")
        f.define(
            "anchor.consume_store",
            "kafka-python consume + psycopg upsert, a transaction per batch (anchor)",
            "msgs/s",
        )
        f.define("anchor.peer", "eventsourcing ProjectionRunner (peer)", events_s)
        copies = self.options.processes
        group = f" ({copies} processes, one group)" if copies > 1 else ""
        f.define(
            "ingest.rate",
            f"ingest: inbound topic -> event store{group}",
            events_s,
            anchor="anchor.pg_insert",
            target=Target("ge", 10_000, unit=events_s),
        )
        shares = f" ({copies} processes, shares of the offenders)" if copies > 1 else ""
        f.define(
            "relay.rate",
            f"relay: event store -> offender-events topic{shares}",
            events_s,
            anchor="anchor.kafka_produce",
            target=Target("ge", 0.8, ratio=True),
        )
        for name in projections:
            f.define(
                f"project.{name}.rate",
                f"projector {name}: catch-up{group}",
                events_s,
                anchor="anchor.consume_store",
                target=Target("ge", 30_000, unit=events_s),
            )
        f.define(
            "rebuild.all.rate",
            "full rebuild (all projections)",
            events_s,
            anchor="anchor.peer",
            target=Target("ge", 30_000, unit=events_s),
        )
        f.define("alerts.p50", "alert latency p50", "ms")
        f.define("alerts.p99", "alert latency p99", "ms", target=Target("lt", 500, unit="ms"))
        f.define("alerts.offered", "steady load offered (latency phase)", events_s)
        f.define(
            "return.area",
            "one area's return (largest area)",
            "ms",
            target=Target("lt", 200, unit="ms"),
        )
        f.define("return.national", "national tables", "ms", target=Target("lt", 2000, unit="ms"))
        memory = Target("le", GIB_IN_MIB, unit="MiB")
        for label in (
            "ingest",
            "relay",
            *(f"project {n}" for n in projections),
            "publish-alerts",
            "rebuild",
        ):
            f.define(
                f"memory.{label.replace(' ', '.')}", f"peak memory: {label}", "MiB", target=memory
            )

    def cpu_phase(self, phase: str, before: system.CpuSnapshot) -> None:
        self.cpu[phase] = system.cpu_usage(before, self.processes.cpu_snapshot())

    # --- phases ---------------------------------------------------------------------------

    def run(self) -> None:
        o = self.options
        log.info(
            "bench starting",
            schema=self.name,
            offenders=o.offenders,
            years=f"{o.first_year}-{o.last_year}",
            workdir=str(self.workdir),
        )
        self.history = history.cached_history(
            o.cache_dir, o.first_year, o.last_year, o.offenders, o.seed
        )
        log.info(
            "history ready",
            lines=self.history.lines,
            path=str(self.history.path),
            generated_seconds=self.history.generated_seconds,
        )
        ensure_topics(self.kafka, self.topics)
        self.tracker = bootstrap(self.settings)
        projections = list(self.tracker.writers)
        self.define_figures(projections)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("produce", self.produce_bulk),
            ("ingest", self.ingest),
            ("relay", self.relay),
            *((f"project {name}", self._projector_step(name)) for name in projections),
            ("publish alerts", self.publish_backlog),
            ("alert latency", self.alert_latency),
            ("rebuild", self.rebuild),
            ("returns", self.returns),
            ("peer", self.peer),
            ("anchors", self.anchors),
        ]
        for name, step in steps:
            log.info("phase", phase=name)
            try:
                step()
            except Exception as error:
                self.errors.append(f"{name}: {error!r}")
                log.error("phase failed", phase=name, error=repr(error))
                self.processes.stop_all()
                if name in ("produce", "ingest", "relay"):
                    break  # everything after needs this phase's output

    def _projector_step(self, name: str) -> Callable[[], None]:
        return lambda: self.project(name)

    def produce_bulk(self) -> None:
        """Everything but the held-back tail goes to the inbound topic before ingest starts,
        so the ingest figure measures consumption alone."""
        assert self.history is not None
        o = self.options
        self.steady_lines = min(int(o.rate * o.steady_seconds), self.history.lines // 4)
        self.bulk_lines = self.history.lines - self.steady_lines
        from infra.kafka import producer

        sender: Any = producer(self.kafka, linger_ms=20)
        started = time.monotonic()
        try:
            for value in self.history.messages(0, self.bulk_lines):
                sender.send(self.topics.inbound, key=history.mappa_key(value), value=value)
            sender.flush()
        finally:
            sender.close()
        seconds = time.monotonic() - started
        self.details["produce"] = {
            "lines": self.bulk_lines,
            "seconds": round(seconds, 1),
            "msgs_per_s": round(self.bulk_lines / seconds),
        }
        log.info("produced", lines=self.bulk_lines, seconds=round(seconds, 1))

    def _end_offsets(self, topic: str) -> dict[str, int]:
        """``<topic>-<partition>`` -> end offset (the positions the consumers store)."""
        from kafka import KafkaConsumer, TopicPartition

        probe = KafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)
        try:
            partitions = [
                TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())
            ]
            ends = probe.end_offsets(partitions)
            return {f"{tp.topic}-{tp.partition}": int(ends[tp]) for tp in partitions}
        finally:
            probe.close()

    def _profile_path(self, label: str) -> Path | None:
        if not self.options.profile:
            return None
        path = self.workdir / f"{label.replace(' ', '-')}.prof"
        self.profiles[label] = path
        return path

    def _start(self, label: str, *args: str) -> None:
        self.processes.start_mappa(label, *args, profile=self._profile_path(label))

    def _copies(self) -> list[str]:
        """The arguments that run a consumer as several processes of one group."""
        return ["--processes", str(self.options.processes)] if self.options.processes > 1 else []

    def ingest(self) -> None:
        tracker = self._tracker()
        ends = retrying(lambda: self._end_offsets(self.topics.inbound), "end offsets")
        total = sum(ends.values())
        records = tracker.records
        stored: list[tuple[int, int]] = []  # (positions, events stored), to convert

        def measure() -> int:
            done = sum(min(records.position(upstream), end) for upstream, end in ends.items())
            stored.append((done, tracker.max_notification_id()))
            return done

        before = self.processes.cpu_snapshot()
        self._start("ingest", "run", "ingest", *self._copies())
        progress = follow(
            measure, total, self.processes, ["ingest"], self.options.timeout, "ingest"
        )
        self.cpu_phase("ingest", before)
        self.processes.stop("ingest")
        events = dict(stored)

        def events_at(position: int) -> float:
            return float(events.get(position, 0))

        self.figures.set("ingest.rate", progress.rate(events_at))
        self.details["ingest"] = {
            "messages": total,
            "events_stored": events_at(total),
            "processes": self.options.processes,
            "messages_per_s": round(progress.rate()),
            "wall_seconds_with_start_up": round(progress.wall_seconds(), 1),
        }

    def relay(self) -> None:
        tracker = self._tracker()

        def stored_events() -> int:
            with tracker.views.transaction() as tx:
                tx.execute("SELECT count(*) FROM offenders_events")
                row = tx.fetchone()
                return int(row[0]) if row else 0

        head = retrying(stored_events, "events stored")
        from kafka import KafkaConsumer, TopicPartition

        topic = self.topics.offender_events
        probe = KafkaConsumer(bootstrap_servers=self.kafka, enable_auto_commit=False)

        def partitions_of_topic() -> list[int]:
            found = probe.partitions_for_topic(topic)
            if not found:
                raise RuntimeError(f"no metadata for {topic} yet")
            return sorted(found)

        partitions = [TopicPartition(topic, p) for p in retrying(partitions_of_topic, "partitions")]

        def measure() -> int:
            # Messages on the topic: with several relays, each keeps a position of its own.
            return sum(probe.end_offsets(partitions).values())

        before = self.processes.cpu_snapshot()
        self._start("relay", "run", "relay", *self._copies())
        try:
            progress = follow(
                measure, head, self.processes, ["relay"], self.options.timeout, "relay"
            )
        finally:
            probe.close()
        self.cpu_phase("relay", before)
        self.processes.stop("relay")
        self.figures.set("relay.rate", progress.rate())
        self.details["relay"] = {
            "events": head,
            "processes": self.options.processes,
            "wall_seconds_with_start_up": round(progress.wall_seconds(), 1),
        }

    def project(self, name: str) -> None:
        tracker = self._tracker()
        writer = tracker.writer(name)
        ends = retrying(lambda: self._end_offsets(self.topics.offender_events), "end offsets")
        total = sum(ends.values())

        def measure() -> int:
            positions = writer.positions()
            return sum(min(positions.get(upstream, 0), end) for upstream, end in ends.items())

        label = f"project {name}"
        before = self.processes.cpu_snapshot()
        self._start(label, "run", "project", name, *self._copies())
        progress = follow(measure, total, self.processes, [label], self.options.timeout, label)
        self.cpu_phase(label, before)
        self.processes.stop(label)
        self.figures.set(f"project.{name}.rate", progress.rate())
        self.details[label] = {
            "messages": total,
            "processes": self.options.processes,
            "wall_seconds_with_start_up": round(progress.wall_seconds(), 1),
        }

    def _alert_count(self) -> int:
        with self._tracker().views.transaction() as tx:
            tx.execute("SELECT count(*) FROM victim_alerts")
            row = tx.fetchone()
        return int(row[0]) if row else 0

    def publish_backlog(self) -> None:
        """Start the publisher (it stays up for the latency phase) and the alert reader;
        wait until every alert raised so far is on the topic."""
        self.alerts = AlertReader(self.kafka, self.topics.victim_alerts)
        raised = retrying(self._alert_count, "count alerts")
        before = self.processes.cpu_snapshot()
        self._start("publish-alerts", "run", "publish-alerts")
        started = time.monotonic()
        deadline = started + self.options.timeout
        while self.alerts.seen < raised:
            self.alerts.poll(200)
            self.processes.check_alive("publish-alerts")
            if time.monotonic() > deadline:
                raise TimeoutError(f"publish-alerts: {self.alerts.seen} of {raised} alerts")
        seconds = time.monotonic() - started
        self.cpu_phase("publish alerts", before)
        self.details["publish alerts"] = {
            "alerts": raised,
            "seconds_with_start_up": round(seconds, 1),
        }

    def alert_latency(self) -> None:
        assert self.history is not None
        o = self.options
        tail = list(self.history.messages(self.bulk_lines))
        if not tail:
            raise RuntimeError("no lines were held back for the steady load")
        labels = ("ingest", "relay", "project victim-alerts")
        self._start("ingest", "run", "ingest")
        self._start("relay", "run", "relay")
        self._start("project victim-alerts", "run", "project", "victim-alerts")
        # Only once every consumer has its partitions does the clock mean anything.
        self.processes.wait_for_log("ingest", "partitions assigned", 120)
        self.processes.wait_for_log("project victim-alerts", "partitions assigned", 120)
        self.processes.wait_for_log("relay", "relay started", 120)
        time.sleep(1)
        reader = self.alerts
        reader.poll(100)  # anything left from the backlog is not measured
        offer = SteadyOffer(self.kafka, self.topics.inbound, tail, o.rate)
        before = self.processes.cpu_snapshot()
        offer.start()
        latencies: list[float] = []
        stage_marks: list[tuple[float, ...]] = []
        by_offender = 0
        unmatched = 0
        next_check = 0.0
        drain_limit = max(300.0, 10 * o.steady_seconds)
        while True:
            for alert in reader.poll(100):
                trigger = offer.trigger(alert)
                if trigger is None:
                    unmatched += 1
                    continue
                latencies.append((alert["_received_ms"] - trigger[0]) / 1000)
                by_offender += trigger[1]
                if not trigger[1] and (marks := _stage_marks(trigger[0], alert)) is not None:
                    stage_marks.append(marks)
            self.processes.check_alive(*labels, "publish-alerts")
            if offer.error is not None:
                raise offer.error
            now = time.monotonic()
            # Done when the whole load has gone through every stage and every alert it
            # raised is on the topic: a pipeline that fell behind is measured to the end.
            if offer.done.is_set() and now >= next_check:
                next_check = now + 1
                if retrying(lambda: self._drained(reader.seen), "drained"):
                    break
                if now - offer.ended > drain_limit:
                    raise TimeoutError(f"the pipeline did not drain within {drain_limit:.0f}s")
        drain_seconds = time.monotonic() - offer.ended
        self.cpu_phase("alert latency", before)
        for label in labels:
            self.processes.stop(label)
        if not latencies:
            raise RuntimeError("no alert could be matched to a line of the steady load")
        latencies.sort()
        self.figures.set("alerts.p50", percentile(latencies, 0.50) * 1000)
        self.figures.set("alerts.p99", percentile(latencies, 0.99) * 1000)
        self.figures.set("alerts.offered", offer.achieved_rate())
        self.details["alert latency"] = {
            "lines_offered": len(tail),
            "alerts_measured": len(latencies),
            "matched_by_offender_not_event": by_offender,
            "alerts_not_from_the_steady_load": unmatched,
            "max_ms": round(latencies[-1] * 1000, 1),
            "seconds_to_drain_after_the_load": round(drain_seconds, 1),
            "victim_alerts_sequence_indexed": retrying(self._sequence_indexed, "indexes"),
            "stages": latency_stages(stage_marks),
            "slowest": slowest_alerts(stage_marks, offer.began_wall_ms),
        }

    def _sequence_indexed(self) -> bool:
        """Whether some index of ``victim_alerts`` starts with ``sequence`` (the publisher
        and the projector read the table by it)."""
        with self._tracker().views.transaction() as tx:
            tx.execute(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = %s "
                "AND tablename = 'victim_alerts'",
                (self.name,),
            )
            return any("(sequence" in str(row[0]) for row in tx.fetchall())

    def _drained(self, alerts_seen: int) -> bool:
        """Every offered line ingested, every stored event relayed and projected into the
        victim alerts, and every raised alert read back from the topic."""
        tracker = self._tracker()
        from consumers.relay import relayed_everything

        inbound = self._end_offsets(self.topics.inbound)
        if any(tracker.records.position(u) < end for u, end in inbound.items()):
            return False
        if not relayed_everything(tracker.records, tracker.views):
            return False
        events = self._end_offsets(self.topics.offender_events)
        positions = tracker.writer("victim-alerts").positions()
        if any(positions.get(u, 0) < end for u, end in events.items()):
            return False
        return alerts_seen >= self._alert_count()

    def rebuild(self) -> None:
        """Every projection from zero, in a subprocess of its own (for its memory)."""
        out = self.workdir / "rebuild.json"
        before = self.processes.cpu_snapshot()
        argv = [sys.executable, "-m", "infra.bench", "--rebuild-worker", str(out)]
        profile = self._profile_path("rebuild")
        if profile is not None:
            argv = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(profile),
                "-m",
                "infra.bench",
                "--rebuild-worker",
                str(out),
            ]
        self.processes.start("rebuild", argv)
        status = self.processes.wait("rebuild", self.options.timeout)
        self.cpu_phase("rebuild", before)
        if status != 0:
            raise RuntimeError(f"rebuild exited {status}: {self.processes.log_tail('rebuild')}")
        result = json.loads(out.read_text())
        self.figures.set("rebuild.all.rate", result["events"] / result["wall_seconds"])
        self.details["rebuild"] = result
        # The projections were rebuilt by worker processes: their peaks count as the
        # rebuild's (the sampler sees them too, every 0.2 s).
        self.processes.note_peak_kib("rebuild", result["peak_rss_kib"])

    def returns(self) -> None:
        from projections.statistical_return.national import (
            national_tables_from_store,
            store_areas,
        )
        from projections.statistical_return.projection import statistical_return

        tracker = self._tracker()
        year = self.options.last_year
        with tracker.views.transaction() as tx:
            tx.execute(
                "SELECT area, count(*) FROM return_offender_areas GROUP BY area "
                "ORDER BY count(*) DESC, area LIMIT 1"
            )
            row = tx.fetchone()
        if row is None:
            raise RuntimeError("the read model has no return histories")
        area = str(row[0])
        repeats = 3 if self.options.quick else 5

        def one_area() -> None:
            with tracker.views.transaction() as tx:
                statistical_return(
                    tx, area, year, population=tracker.areas.population_for(area, year)
                )

        def national() -> None:
            with tracker.views.transaction() as tx:
                areas = sorted({*store_areas(tx), *(a.code for a in tracker.areas.areas)})
                national_tables_from_store(tx, areas, year, tracker.areas.population_for)

        before = self.processes.cpu_snapshot()
        area_ms = [retrying(lambda: timed(one_area), "return") * 1000 for _ in range(repeats)]
        national_ms = [
            retrying(lambda: timed(national), "national tables") * 1000
            for _ in range(max(2, repeats - 2))
        ]
        self.cpu_phase("returns", before)
        self.figures.set("return.area", statistics.median(area_ms))
        self.figures.set("return.national", statistics.median(national_ms))
        self.details["returns"] = {
            "area": area,
            "year": year,
            "area_offenders": int(row[1]),
            "area_ms": [round(v, 1) for v in area_ms],
            "national_ms": [round(v, 1) for v in national_ms],
        }

    def peer(self) -> None:
        before = self.processes.cpu_snapshot()
        rate, counted = retrying(
            lambda: peer.peer_rate(
                self.settings.eventsourcing_environment(), self.options.peer_seconds
            ),
            "peer",
        )
        self.cpu_phase("peer", before)
        self.figures.set("anchor.peer", rate)
        self.details["peer"] = {"events": counted, "seconds": self.options.peer_seconds}

    def anchors(self) -> None:
        from psycopg import sql

        from consumers.projector import KafkaProjector

        tracker = self._tracker()
        with tracker.views.transaction() as tx:
            tx.execute(
                sql.SQL("SELECT avg(octet_length(state)), avg(octet_length(topic)) FROM {}")
                .format(sql.Identifier(self.name, "offenders_events"))
                .as_string(None)
            )
            row = tx.fetchone()
        state_bytes = int(row[0] or 600) if row else 600
        topic_chars = int(row[1] or 24) if row else 24
        message_bytes = self._mean_message_bytes(self.topics.offender_events)
        rows = self.options.anchor_rows
        before = self.processes.cpu_snapshot()
        pg = retrying(
            lambda: anchors.postgres_anchors(
                self.database_url, self.name, rows, state_bytes, topic_chars
            ),
            "PostgreSQL anchors",
        )
        anchor_topic = f"{self.name}.bench.anchor"
        kafka = anchors.kafka_anchors(self.kafka, anchor_topic, rows, message_bytes)
        consume_store = retrying(
            lambda: anchors.consume_and_store_anchor(
                self.database_url,
                self.name,
                self.kafka,
                anchor_topic,
                rows,
                KafkaProjector.MAX_BATCH,
            ),
            "consume-and-store anchor",
        )
        self.cpu_phase("anchors", before)
        self.figures.set("anchor.pg_copy", pg["copy"])
        self.figures.set("anchor.pg_insert", pg["insert"])
        self.figures.set("anchor.kafka_produce", kafka["produce"])
        self.figures.set("anchor.kafka_consume", kafka["consume"])
        self.figures.set("anchor.consume_store", consume_store)
        self.details["anchors"] = {
            "rows": rows,
            "stored_event_state_bytes": state_bytes,
            "offender_event_message_bytes": message_bytes,
        }

    def _mean_message_bytes(self, topic: str, sample: int = 2000) -> int:
        from infra.kafka import consumer

        reader: Any = consumer(self.kafka, None)
        try:
            from kafka import TopicPartition

            partitions = [
                TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())
            ]
            reader.assign(partitions)
            reader.seek_to_beginning()
            sizes: list[int] = []
            deadline = time.monotonic() + 30
            while len(sizes) < sample and time.monotonic() < deadline:
                for batch in reader.poll(timeout_ms=500).values():
                    sizes.extend(len(m.value) for m in batch)
            return int(statistics.mean(sizes)) if sizes else 600
        finally:
            reader.close()

    def _tracker(self) -> Tracker:
        assert self.tracker is not None
        return self.tracker

    # --- the end ------------------------------------------------------------------------

    def collect_memory(self) -> None:
        for key, figure in self.figures.items.items():
            if key.startswith("memory."):
                label = figure.label.removeprefix("peak memory: ")
                self.figures.set(key, self.processes.peak_mib(label))

    def events_stored(self) -> int:
        try:
            return self._tracker().max_notification_id()
        except Exception:
            return 0

    def close(self) -> None:
        self.processes.close()
        if getattr(self, "alerts", None) is not None:
            self.alerts.close()
        if self.tracker is not None:
            self.tracker.close()
        if self.options.keep:
            return
        try:
            import psycopg
            from psycopg import sql

            with psycopg.connect(self.database_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.name))
                )
            names = [*self.topics.partitions(), f"{self.name}.bench.anchor"]
            delete_topics(self.kafka, names)
        except Exception as error:  # cleaning up must not hide the figures
            log.warning("cleanup failed", error=repr(error))


# --- the alert latency's two ends -----------------------------------------------------------


class AlertReader:
    """Reads ``mappa.victim-alerts.v1`` as a read-committed consumer from the beginning."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import TopicPartition

        from infra.kafka import consumer

        self.consumer: Any = consumer(bootstrap, None)
        partitions = [
            TopicPartition(topic, p)
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning()
        self.seen = 0

    def poll(self, timeout_ms: int) -> list[dict[str, Any]]:
        """The alerts polled, each with ``_published_ms`` (its message's CreateTime, when
        the publisher sent it) and ``_received_ms`` (now), wall-clock ms."""
        polled = self.consumer.poll(timeout_ms=timeout_ms)
        received_ms = time.time() * 1000
        alerts = []
        for batch in polled.values():
            for message in batch:
                alert = json.loads(message.value)
                alert["_published_ms"] = message.timestamp
                alert["_received_ms"] = received_ms
                alerts.append(alert)
        self.seen += len(alerts)
        return alerts

    def close(self) -> None:
        self.consumer.close()


class SteadyOffer(threading.Thread):
    """Produces ``lines`` to the inbound topic at ``rate`` per second, remembering when each
    line (by eventId, and by MAPPA reference) was sent, in wall-clock ms: the other clocks an
    alert passes (recordedAt, raisedAt, the message's CreateTime) are wall clocks too."""

    def __init__(self, bootstrap: str, topic: str, lines: list[bytes], rate: int) -> None:
        super().__init__(name="bench-steady-offer", daemon=True)
        self.bootstrap, self.topic, self.lines, self.rate = bootstrap, topic, lines, rate
        self.sent_at: dict[str, float] = {}
        self.sent_for: dict[str, list[float]] = {}
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.began = 0.0
        self.began_wall_ms = 0.0
        self.ended = math.inf

    def run(self) -> None:
        from infra.kafka import producer

        try:
            sender: Any = producer(self.bootstrap)
            sender.partitions_for(self.topic)
            self.began = time.monotonic()
            self.began_wall_ms = time.time() * 1000
            for number, value in enumerate(self.lines):
                due = self.began + number / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                key = history.mappa_key(value)
                sent = time.time() * 1000
                event = history.event_id(value)
                if event:
                    self.sent_at[event] = sent
                if key:
                    self.sent_for.setdefault(key.decode(), []).append(sent)
                sender.send(self.topic, key=key, value=value)
            sender.flush()
            sender.close()
        except BaseException as error:
            self.error = error
        finally:
            self.ended = time.monotonic()
            self.done.set()

    def achieved_rate(self) -> float:
        return len(self.lines) / max(self.ended - self.began, 1e-9)

    def trigger(self, alert: dict[str, Any]) -> tuple[float, bool] | None:
        """(wall-clock ms at which the line that triggered ``alert`` was sent, whether it is
        a later line of the offender than the event the alert names), None if the alert is
        not from this load.

        An alert names the event it is about, but it may become due only when a later fact
        of the same offender arrives (a victim enrolled after the transfer was reported):
        then that later line was the trigger, and timing the alert from the named event
        would count the gap between the two facts' arrivals as the pipeline's delay. So the
        trigger is the offender's latest line sent before the projector raised the alert,
        and never earlier than the named event. A correction names the retracted event:
        its trigger is the offender's latest line before the raise, too.
        """
        raised = alert["_received_ms"]
        with contextlib.suppress(KeyError, ValueError):
            raised = min(raised, _epoch_ms(alert["raised_at"]))
        times = self.sent_for.get(str(alert.get("offender_ref")), [])
        index = bisect.bisect_right(times, raised)
        latest = times[index - 1] if index else None
        named = self.sent_at.get(str(alert.get("event_id")))
        if named is not None and alert.get("kind") != "correction" and named <= raised:
            if latest is not None and latest > named:
                return latest, True
            return named, False
        return (latest, True) if latest is not None else None


# Where an alert's time goes, from the clocks it passes (all on this machine's wall clock):
# sent by the load -> recordedAt (stamped by ingest as it decides) -> raisedAt (stamped by
# the projector as it derives the alert) -> the alert message's CreateTime (the publisher's
# send) -> received by the reader.
LATENCY_STAGES = (
    ("ingest", "sent to recorded: inbound fetch, validation, decision"),
    ("relay and projector", "recorded to raised: ingest's commit, relay, projector's fetch, fold"),
    ("publisher", "raised to sent: projector's commit, NOTIFY, publisher's read and send"),
    ("transaction and read", "sent to received: Kafka transaction commit, read-committed fetch"),
)


def _stage_marks(sent: float, alert: dict[str, Any]) -> tuple[float, ...] | None:
    """The wall-clock ms at which an alert's trigger, sent at ``sent``, passed each stage
    (None if a stamp is missing). Only for an alert triggered by the line of the event it
    names: the stamps are that event's."""
    try:
        recorded = _epoch_ms(alert["recorded_at"])
        raised = _epoch_ms(alert["raised_at"])
    except (KeyError, ValueError):
        return None
    return (sent, recorded, raised, float(alert["_published_ms"]), alert["_received_ms"])


def latency_stages(stage_marks: list[tuple[float, ...]]) -> dict[str, dict[str, float]]:
    """p50/p99 in ms of each stage, over the alerts split into stages."""
    stages: list[list[float]] = [[] for _ in LATENCY_STAGES]
    for marks in stage_marks:
        for stage, (start, end) in zip(stages, itertools.pairwise(marks), strict=True):
            stage.append(max(0.0, end - start))
    out: dict[str, dict[str, float]] = {}
    for (name, _), values in zip(LATENCY_STAGES, stages, strict=True):
        if values:
            values.sort()
            out[name] = {
                "p50_ms": round(percentile(values, 0.5), 1),
                "p99_ms": round(percentile(values, 0.99), 1),
            }
    return out


def slowest_alerts(
    stage_marks: list[tuple[float, ...]], began_wall_ms: float, count: int = 5
) -> list[dict[str, float]]:
    """The slowest alerts: when their line was sent (seconds into the load) and the ms
    each stage took, to tell a stall of one process from a machine that is too busy."""
    out = []
    for marks in sorted(stage_marks, key=lambda m: m[-1] - m[0], reverse=True)[:count]:
        row = {"sent_at_s": round((marks[0] - began_wall_ms) / 1000, 1)}
        for (name, _), (start, end) in zip(LATENCY_STAGES, itertools.pairwise(marks), strict=True):
            row[f"{name}_ms"] = round(end - start, 1)
        out.append(row)
    return out


def stages_text(stages: dict[str, dict[str, float]]) -> str:
    if not stages:
        return ""
    parts = [
        f"{name} ({explained}) p50 {stages[name]['p50_ms']:,.0f} ms, p99"
        f" {stages[name]['p99_ms']:,.0f} ms"
        for name, explained in LATENCY_STAGES
        if name in stages
    ]
    return " Where the time goes, stage by stage: " + "; ".join(parts) + "."


def _epoch_ms(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp() * 1000


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


# --- the rebuild worker (a subprocess of the run) ---------------------------------------------


def rebuild_worker(out: Path) -> int:
    """Rebuild every projection from the event store as `mappa rebuild all` does (settings
    from the environment: on PostgreSQL, one process per projection, as many at once as
    there are cores), and write the seconds each took and the whole rebuild's."""
    tune_garbage_collection()  # as `mappa rebuild` does
    settings = Settings()
    configure_logging(settings.log_format, "warning")
    tracker = bootstrap(settings)
    try:
        events = tracker.max_notification_id()
        names = list(tracker.writers)
        jobs = default_jobs(settings)
        started = time.perf_counter()
        # A rebuild interrupted by a database restart starts again from zero; only the
        # attempt that completes is timed.
        rebuilt = retrying(
            lambda: rebuild_projections(tracker, names, jobs), "rebuild", patience=600
        )
        wall = time.perf_counter() - started
        result = {
            "events": events,
            "jobs": jobs,
            "wall_seconds": wall,
            # One replay rebuilds every projection: one peak (its largest process's).
            "peak_rss_kib": max(r.peak_rss_kib for r in rebuilt),
        }
        out.write_text(json.dumps(result))
    finally:
        tracker.close()
    return 0


# --- the report -----------------------------------------------------------------------------


def limits(bench: Bench) -> dict[str, str]:
    """What the measurements say limits each figure: the CPU the process, the servers and
    other work on the machine used during its phase, and what the anchors allow."""
    out: dict[str, str] = {}
    figures = bench.figures
    pure_python_crc = "not installed" in system.versions("", "").get("crc32c", "")
    crc_text = (
        " kafka-python computes every record batch's CRC32C in pure Python here (the C"
        " `crc32c` package is not installed), which bounds the anchor and this process alike."
        if pure_python_crc
        else ""
    )

    def cpu_text(phase: str, label: str) -> str:
        usage = bench.cpu.get(phase, {})
        own = usage.get(label)
        if own is None:
            return ""
        machine, others = usage.get("machine", 0.0), usage.get("others", 0.0)
        text = (
            f"during this phase the process used {own:.2f} cores, PostgreSQL"
            f" {usage.get('postgres', 0):.2f}, the broker {usage.get('kafka', 0):.2f}, other"
            f" work on the machine {others:.2f}; the machine was {machine:.0%} busy"
        )
        postgres = usage.get("postgres", 0.0)
        if own >= 1.15:
            text += (
                f": its processes together used {own:.2f} cores: bound by the machine's CPU,"
                " each process by its own Python CPU (one core each)."
            )
        elif own >= 0.85:
            text += ": bound by the process's own Python CPU (one core, single-threaded)."
        elif own + postgres >= 0.85 and postgres >= 0.15:
            text += (
                ": a serial loop, the process computing while PostgreSQL waits and then"
                f" waiting while PostgreSQL runs the batch's queries ({own:.2f} +"
                f" {postgres:.2f} cores, about one core together): both shares would have to"
                " shrink."
            )
        elif machine >= 0.85 and others >= 0.3:
            text += (
                ": bound by CPU, of which other work on the machine took a large share"
                " (the figure is low by about that share)."
            )
        elif machine >= 0.85:
            text += ": bound by the machine's CPU, shared with the servers."
        elif own >= 0.7:
            text += ": mostly the process's own Python CPU (one core, single-threaded)."
        elif postgres >= 0.3:
            text += ": much of the time is spent in PostgreSQL, in the queries of each batch."
        else:
            text += ": waiting on round trips (database or broker) more than computing."
        return text

    def below_anchor(key: str) -> str:
        figure = figures.items[key]
        anchor = figures.items.get(figure.anchor or "")
        target = figure.target
        if anchor is None or anchor.value is None or target is None or target.ratio:
            return ""
        if anchor.value < target.threshold:
            return (
                f" The anchor itself ({anchor.label}, {anchor.value:,.0f} {anchor.unit}) is below"
                " the target on this machine, so no client built on it could meet it."
            )
        return ""

    def beside_least_projector(key: str) -> str:
        figure = figures.items[key]
        anchor = figures.items.get(figure.anchor or "")  # the consume-and-store anchor
        if anchor is None or anchor.value is None or figure.value is None:
            return ""
        return (
            f" The least a projector can do here (the consume-and-store anchor: raw"
            f" kafka-python and psycopg, one process) made {anchor.value:,.0f} {anchor.unit};"
            f" this projector made {figure.value / anchor.value:.2f}x of that. The rest is the"
            " projection's own work for each event: its rules folded over the offender's"
            " history and the history and view rows stored, by design one offender's rows"
            " derived again at each new fact of theirs."
        )

    out["ingest.rate"] = cpu_text("ingest", "ingest") + below_anchor("ingest.rate")
    out["relay.rate"] = cpu_text("relay", "relay") + crc_text
    for key in figures.items:
        if key.startswith("project.") and key.endswith(".rate"):
            name = key.removeprefix("project.").removesuffix(".rate")
            out[key] = cpu_text(f"project {name}", f"project {name}") + below_anchor(key)
            out[key] += beside_least_projector(key) + crc_text
    rebuild = bench.details.get("rebuild", {})
    out["rebuild.all.rate"] = cpu_text("rebuild", "rebuild") + (
        " A full rebuild replays the event store offender by offender, once for every"
        " projection (each event read and decoded once, each offender's rows derived once, each"
        " history stored once for all of them);"
        f" `mappa rebuild all` shared the offenders between {rebuild.get('jobs', 1)}"
        " processes. The figure counts the store's events per second of the whole rebuild,"
        " start-up included. The workers' PostgreSQL connections closed before the phase"
        " ended, so their server processes' CPU is counted under other work."
    )
    latency = bench.details.get("alert latency", {})
    out["alerts.p99"] = (
        "an alert crosses four processes, each batching and committing a database"
        " transaction per batch: ingest and the projector long-poll Kafka (a fetch returns"
        " as soon as a message arrives), the relay and the publisher wait for PostgreSQL's"
        " NOTIFY of each commit (at most 200 ms and 100 ms), and the relay and publisher"
        " wait for the broker's acknowledgements (the publisher's in a Kafka transaction);"
        f" {latency.get('alerts_measured', 0)} alerts measured, and the pipeline took"
        f" {latency.get('seconds_to_drain_after_the_load', 0):.0f} s after the load ended to"
        " catch up."
        + stages_text(latency.get("stages", {}))
        + " The four processes share the machine's cores: "
        + cpu_text("alert latency", "ingest")
        + crc_text
    )
    if latency.get("victim_alerts_sequence_indexed") is False:
        unindexed = (
            " The `victim_alerts` table has no index on `sequence`, so the projector's"
            " `MAX(sequence)` for each batch that raises alerts and the publisher's"
            " `sequence > N ORDER BY sequence` poll (every 100 ms when idle) scan the whole"
            " table: this is where PostgreSQL's CPU goes."
        )
        out["alerts.p99"] += unindexed
        if "project.victim-alerts.rate" in out:
            out["project.victim-alerts.rate"] += unindexed
    out["return.area"] = (
        "the return is counted on each request from the area's offenders' timelines (the"
        " `return_timelines` read model): read from PostgreSQL, decoded (cached by content)"
        " and counted in Python."
    )
    out["return.national"] = (
        "the national tables count, on each request, two years' returns of every area from"
        " the `return_timelines` read model: every timeline read from PostgreSQL, decoded"
        " and counted in Python."
    )
    from projections.base import ProjectionWriter

    held = (
        f"each projection writer keeps up to {ProjectionWriter.SHED_CACHE_SIZE:,} offender"
        " histories in memory, their documents as JSON between batches"
        f" (`ProjectionWriter.SHED_CACHE_SIZE`; victim alerts, which read every document,"
        f" {ProjectionWriter.CACHE_SIZE:,} decoded), "
    )
    for key in figures.items:
        if key.startswith("memory."):
            out[key] = held + (
                "and the rebuild replays the projections one after another in one process,"
                " giving each writer's cache back before the next."
                if key == "memory.rebuild"
                else "and the process has one writer."
            )
    return {key: text for key, text in out.items() if text}


def profile_appendix(bench: Bench, top: int = 20) -> list[str]:
    import io
    import pstats

    lines: list[str] = []
    for label, path in bench.profiles.items():
        if not path.exists():
            continue
        stream = io.StringIO()
        stats = pstats.Stats(str(path), stream=stream)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)
        text = stream.getvalue()
        body = text[text.find("   ncalls") :] if "   ncalls" in text else text
        lines += [f"### {label}", "", "```", body.rstrip(), "```", ""]
    if lines:
        lines = [
            "## Where the time goes (cProfile, own time; this run was profiled, so its"
            " figures are slower than an unprofiled run's)",
            "",
            *lines,
        ]
    return lines


def write_outputs(bench: Bench) -> None:
    o = bench.options
    assert bench.history is not None or bench.errors
    h = bench.history
    out = o.output_dir
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "benchmarks.json", out / "BENCHMARKS.md"
    previous = report.load_previous(json_path)
    if previous is not None and not _same_parameters(previous, o):
        previous = None  # figures of another scale are no baseline
    postgres_version = "unknown"
    try:
        with bench._tracker().views.transaction() as tx:
            tx.execute("SHOW server_version")
            row = tx.fetchone()
            postgres_version = str(row[0]) if row else postgres_version
    except Exception:
        pass
    command = "scripts/bench" + ("".join(" " + shlex.quote(a) for a in o.argv))
    generation = (
        "taken from the cache"
        if h is None or h.generated_seconds is None
        else f"generated in {h.generated_seconds:.0f} s"
    )
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_minutes": (time.monotonic() - bench.started) / 60,
        "command": command,
        "quick": o.quick,
        "profiled": o.profile,
        "batch_size": o.batch_size,
        "machine": system.machine(),
        "versions": system.versions(postgres_version, system.kafka_broker_version()),
        "history": {
            "offenders": o.offenders,
            "areas": 42,
            "years": f"{o.first_year}-{o.last_year}",
            "seed": o.seed,
            "lines": h.lines if h else 0,
            "mean_bytes": h.mean_bytes if h else 0,
            "bulk_lines": bench.bulk_lines,
            "steady_lines": bench.steady_lines,
            "events_stored": bench.events_stored(),
            "generation": generation,
        },
        "cpu": bench.cpu,
        "details": bench.details,
        "errors": bench.errors,
        "note": _note(bench, previous),
    }
    report.write_json(json_path, meta, bench.figures)
    appendix = profile_appendix(bench)
    if bench.errors:
        appendix = ["## Errors", "", *(f"- {e}" for e in bench.errors), "", *appendix]
    report.write_markdown(md_path, meta, bench.figures, limits(bench), appendix, previous)
    print(f"\nwrote {md_path} and {json_path}\n")
    print("\n".join(report.figure_table(bench.figures, previous)))


def _anchor_changes(bench: Bench, previous: dict[str, Any] | None) -> dict[str, float]:
    """Each anchor's change from the previous run (0.1: 10% more), by label."""
    earlier = (previous or {}).get("figures", {})
    changes: dict[str, float] = {}
    for key, figure in bench.figures.items.items():
        before = (earlier.get(key) or {}).get("value")
        if key.startswith("anchor.") and figure.value and before:
            label = figure.label.removesuffix(" (anchor)").removesuffix(" (peer)")
            changes[label] = figure.value / float(before) - 1
    return changes


def _same_parameters(previous: dict[str, Any], o: Options) -> bool:
    history = previous.get("meta", {}).get("history", {})
    return bool(
        history.get("offenders") == o.offenders
        and history.get("years") == f"{o.first_year}-{o.last_year}"
        and previous.get("meta", {}).get("quick") == o.quick
    )


def _note(bench: Bench, previous: dict[str, Any] | None = None) -> str:
    o = bench.options
    notes = []
    moved = _anchor_changes(bench, previous)
    if moved and max(abs(change) for change in moved.values()) >= 0.15:
        listed = ", ".join(f"{label} {change:+.0%}" for label, change in moved.items())
        notes.append(
            "**The machine itself was not as fast as in the previous run**"
            if sum(moved.values()) < 0
            else "**The machine itself was faster than in the previous run**"
        )
        notes[-1] += (
            f": the anchors, which do not depend on the tracker's code, moved ({listed})."
            " Compare the tracker's figures between the two runs by their ratios to the"
            " anchors, not by value."
        )
    if o.quick:
        notes.append(
            "**A quick run** (`--quick`, a smoke test): a small history and short"
            " phases; its figures say little about the tracker at scale."
        )
    elif o.offenders != 90_000 or (o.first_year, o.last_year) != (2001, 2010):
        minutes = (time.monotonic() - bench.started) / 60
        scale = 90_000 / max(o.offenders, 1) * 10 / (o.last_year - o.first_year + 1)
        notes.append(
            f"**Not the full national scale**: {o.offenders:,} offenders,"
            f" {o.first_year}-{o.last_year}, because at the tracker's present rates the full"
            f" run (`scripts/bench`: 90,000 offenders, ten years) would take about"
            f" {minutes * scale:.0f} minutes on this machine against this run's {minutes:.0f}."
        )
    # The rebuild's workers' database connections close before its phase ends, so their
    # server processes' CPU shows as other work there: not a sign of a shared machine.
    others = [usage.get("others", 0.0) for phase, usage in bench.cpu.items() if phase != "rebuild"]
    if others and max(others) >= 0.2:
        notes.append(
            "**The machine was shared**: other work used up to"
            f" {max(others):.1f} of its {os.cpu_count()} cores during the phases (the"
            " `others` column of the CPU table), so the tracker's figures and the anchors"
            " are both lower than on a quiet machine."
        )
    if RETRIED:
        notes.append(
            f"The bench's own queries were retried {len(RETRIED)} times while the database"
            " or the broker was restarted by other work on the machine."
        )
    if o.profile:
        notes.append("**Profiled** (`--profile`): the processes ran under cProfile.")
    return " ".join(notes)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        # The run's own process (not a test calling this): its collector's pauses would
        # hold back the steady load's producer thread, so lines stamped as sent would leave
        # late and the pipeline be blamed for it. Tuned as the pipeline's processes are.
        tune_garbage_collection()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--rebuild-worker"]:
        return rebuild_worker(Path(argv[1]))
    options = parse_options(argv)
    configure_logging("console", "info")
    bench = Bench(options)
    try:
        try:
            bench.run()
        finally:
            bench.processes.stop_all()
        bench.collect_memory()
        write_outputs(bench)
    finally:
        bench.close()
    missing = bench.figures.missing()
    if bench.errors or missing:
        print(f"\nbench: errors {bench.errors}, figures not produced: {missing}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
