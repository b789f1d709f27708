"""The composition root: the one place where the tracker is wired from its settings.

Nothing here connects at import time; :func:`bootstrap` builds a :class:`Tracker` and the
caller closes it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog
from eventsourcing.persistence import Notification

from consumers.alert_publisher import AlertPublisher
from consumers.inbound import InboundConsumer
from consumers.ingest import IngestService
from consumers.projector import KafkaProjector
from consumers.relay import Relay
from infra import kafka
from infra.encryption import open_offender_records
from infra.eventstore import EVERY_OFFENDER, OffenderRecords, RelayShare, page_of_whole_runs
from infra.kafka import Topics, ensure_topics
from infra.settings import Settings
from infra.storedjson import delivery_of
from infra.viewdb import PostgresViewDatabase, SQLiteViewDatabase
from infra.wakeup import PostgresWakeup
from projections.base import ProjectionWriter
from projections.caseload.projection import CaseloadProjection
from projections.data_quality.projection import DataQualityProjection
from projections.ports import ViewDatabase
from projections.statistical_return.areas import AreaCatalogue, load_areas
from projections.statistical_return.projection import StatisticalReturnProjection
from projections.victim_alerts.projection import ALERTS_CHANNEL, VictimAlertsProjection

log = structlog.get_logger(__name__)

# The upstream name under which projections fed from the event store's own notification
# log track their position (Kafka-fed ones track "<topic>-<partition>").
NOTIFICATION_LOG = "offenders"


class ProjectionsBehind(Exception):
    """Projections a catch-up could not bring up to date (the others it did), by name, with
    what stopped each."""

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        named = ", ".join(f"{name} ({type(error).__name__})" for name, error in failures.items())
        super().__init__(
            f"left behind, not up to date: {named}; every other view is. The log says after "
            "which event each stopped; `mappa status` shows their positions"
        )


@dataclass
class Tracker:
    settings: Settings
    records: OffenderRecords
    views: ViewDatabase
    areas: AreaCatalogue
    writers: dict[str, ProjectionWriter] = field(default_factory=dict)

    def ingest_service(self) -> IngestService:
        return IngestService(self.records)

    def writer(self, name: str) -> ProjectionWriter:
        try:
            return self.writers[name]
        except KeyError:
            known = ", ".join(self.writers)
            raise KeyError(f"unknown projection {name!r}: choose one of {known}") from None

    def max_notification_id(self) -> int:
        return self.records.recorder.max_notification_id() or 0

    def catch_up(
        self, names: list[str] | None = None, on_batch: Callable[[str, int], None] | None = None
    ) -> dict[str, int]:
        """Feed projections from the notification log until they reach its end (embedded).

        A projection that fails is left where its last stored page put it, and the others
        are still brought up to date: then ``ProjectionsBehind`` names those left behind.
        (A fact one projection cannot take must not stop the views that can.)
        """
        applied: dict[str, int] = {}
        failures: dict[str, Exception] = {}
        for name in names or list(self.writers):
            try:
                applied[name] = self._catch_up_one(name, on_batch)
            except Exception as error:
                # The type and the place only: a message may quote a fact (a reference).
                position = self.writers[name].position(NOTIFICATION_LOG)
                log.error("projection could not catch up", projection=name,
                          stopped_after=position, error_type=type(error).__name__)  # fmt: skip
                failures[name] = error
        if failures:
            raise ProjectionsBehind(failures)
        return applied

    def _catch_up_one(self, name: str, on_batch: Callable[[str, int], None] | None) -> int:
        writer = self.writers[name]
        position = writer.position(NOTIFICATION_LOG)
        applied = 0
        while True:
            notifications = self._page_from(position + 1)
            if not notifications:
                break
            deliveries = [delivery_of(n, self.records.mapper, n.id) for n in notifications]
            applied += writer.handle(NOTIFICATION_LOG, deliveries)
            position = notifications[-1].id
            if on_batch:
                on_batch(name, len(notifications))
        if applied > 10 * self.settings.batch_size:
            # After a long catch-up, give the histories cached on the way back before the
            # next projection fills its own cache: one process feeds all of them.
            writer.forget()
        return applied

    def _page_from(self, start: int) -> list[Notification]:
        """A page of the notification log from ``start``, of ``batch_size`` notifications
        or more, ending at the end of a run of one offender's events (see
        ``page_of_whole_runs``)."""
        recorder = self.records.recorder

        def read(first: int, limit: int) -> list[Notification]:
            return list(recorder.select_notifications(start=first, limit=limit))

        return page_of_whole_runs(read, start, self.settings.batch_size)

    def rebuild(self, name: str, on_batch: Callable[[str, int], None] | None = None) -> int:
        """Reset a projection and replay every stored event into it (in this process)."""
        from infra.rebuild import rebuild_projections  # it builds on this module

        return rebuild_projections(self, [name], on_batch=on_batch)[0].applied

    def close(self) -> None:
        self.views.close()
        self.records.close()


def bootstrap(settings: Settings | None = None) -> Tracker:
    """Build the tracker from ``settings`` (by default, from the environment)."""
    settings = settings or Settings()
    areas = load_areas(settings.areas)
    views: ViewDatabase
    if settings.database_url:
        views = PostgresViewDatabase(settings.database_url, settings.database_schema)
    else:
        # Owner only: the files hold records of offenders and victims (SQLite makes them
        # readable by all under the usual umask). A directory that exists is left as it is.
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        views = SQLiteViewDatabase(settings.data_dir / "views.sqlite")
    with _schema_lock(settings):
        # Refuses to open a store that the configured key (or its absence) cannot read.
        records = open_offender_records(settings)
        writers = projection_writers(views, areas)
    return Tracker(settings, records, views, areas, writers)


@contextmanager
def _schema_lock(settings: Settings) -> Iterator[None]:
    """Create the schema if missing, and serialise table creation between processes
    starting at once on it: concurrent ``CREATE TABLE IF NOT EXISTS`` can still collide."""
    if not settings.database_url:
        yield
        return
    import psycopg
    from psycopg import sql

    key = zlib.crc32(f"mappa-schema:{settings.database_schema}".encode())
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                    sql.Identifier(settings.database_schema)
                )
            )
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def projection_writers(views: ViewDatabase, areas: AreaCatalogue) -> dict[str, ProjectionWriter]:
    """A writer for each projection, over ``views`` (tables created if missing)."""
    writers: dict[str, ProjectionWriter] = {}
    for projection in (
        CaseloadProjection(),
        StatisticalReturnProjection(),
        VictimAlertsProjection(areas.lead_time_for),
        DataQualityProjection(),
    ):
        writer = ProjectionWriter(views, projection)
        writer.create_tables()
        writers[projection.name] = writer
    return writers


# --- the production pipeline's processes (need MAPPA_KAFKA_BOOTSTRAP) -----------------


def topics(settings: Settings) -> Topics:
    return Topics(prefix=settings.kafka_topic_prefix)


def _bootstrap_servers(tracker: Tracker) -> str:
    if not tracker.settings.kafka_bootstrap:
        raise RuntimeError("set MAPPA_KAFKA_BOOTSTRAP to run the Kafka pipeline")
    return tracker.settings.kafka_bootstrap


def inbound_consumer(tracker: Tracker) -> InboundConsumer:
    servers, names = _bootstrap_servers(tracker), topics(tracker.settings)
    ensure_topics(servers, names)
    return InboundConsumer(
        tracker.ingest_service(),
        kafka.consumer(
            servers, names.group("ingest"), max_poll_records=tracker.settings.batch_size
        ),
        kafka.producer(servers),
        names.inbound,
        names.inbound_dead_letters,
    )


def relay(tracker: Tracker, share: RelayShare = EVERY_OFFENDER) -> Relay:
    servers, names = _bootstrap_servers(tracker), topics(tracker.settings)
    ensure_topics(servers, names)
    return Relay(
        tracker.records,
        tracker.views,
        kafka.producer(servers),
        names.offender_events,
        tracker.settings.batch_size,
        # The library NOTIFYs this channel on every insert into the event store.
        wakeup=_wakeup(tracker, getattr(tracker.records.recorder, "channel_name", None)),
        share=share,
    )


def projector(tracker: Tracker, name: str) -> KafkaProjector:
    servers, names = _bootstrap_servers(tracker), topics(tracker.settings)
    ensure_topics(servers, names)
    writer = tracker.writer(name)
    return KafkaProjector(
        writer,
        kafka.consumer(
            servers, names.group(f"projector-{name}"), max_poll_records=tracker.settings.batch_size
        ),
        names.offender_events,
    )


def alert_publisher(tracker: Tracker) -> AlertPublisher:
    servers, names = _bootstrap_servers(tracker), topics(tracker.settings)
    ensure_topics(servers, names)
    return AlertPublisher(
        tracker.views,
        lambda: kafka.producer(servers, transactional_id=names.group("alert-publisher")),
        kafka.consumer(servers, None),
        names.victim_alerts,
        wakeup=_wakeup(tracker, ALERTS_CHANNEL),
    )


def _wakeup(tracker: Tracker, channel: str | None) -> Callable[[float], object] | None:
    """On PostgreSQL, a wait that ends at the first NOTIFY on ``channel`` (None: a sleep)."""
    if not tracker.settings.database_url or not channel:
        return None
    return PostgresWakeup(tracker.settings.database_url, channel).wait
