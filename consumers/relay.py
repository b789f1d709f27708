"""The relay (transactional outbox): every stored event, in order, onto the events topic.

The event store's notification log is the outbox: events are committed there with the
facts, so nothing is published that was not stored, and nothing stored is left unpublished.
The relay publishes a batch with the idempotent producer (acks=all), waits until the broker
has every message, and only then stores its position. A crash in between publishes that
batch again after restart; projectors skip the repeats by stream version. While the broker
acknowledges one batch, the relay reads and sends the next (see ``Relay.relay_once``).

Several relay processes may share the work (``mappa run relay --processes N``): each
publishes the offenders of its share (``RelayShare``), in order, and keeps its own position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import structlog

from consumers.runtime import Shutdown, Stopped, with_retries
from consumers.wire import RUN_CONTINUES, encode_stored
from infra.eventstore import (
    EVERY_OFFENDER,
    OffenderRecords,
    RelayRow,
    RelayShare,
    page_of_whole_runs,
)
from projections.base import create_common_tables, write_position
from projections.ports import ViewDatabase

log = structlog.get_logger(__name__)

RELAY = "relay"
UPSTREAM = "offenders"


def _upstream_of(share: RelayShare) -> str:
    """Where a share stores its position: one relay keeps the name it always had."""
    return UPSTREAM if share.parts == 1 else f"{UPSTREAM}:{share.part + 1}/{share.parts}"


def _parts_of(upstream: str) -> int:
    """How many shares the relay that stored a position under ``upstream`` was run as."""
    _, _, parts = upstream.rpartition("/")
    return int(parts) if ":" in upstream and parts.isdigit() else 1


def relay_position(views: ViewDatabase, share: RelayShare = EVERY_OFFENDER) -> int:
    """The notification id of the last event of ``share`` its relay published.

    A share with no position of its own yet starts after the lowest position that a relay
    run as another number of processes stored (0 if none): every event up to there was
    published, whichever share it fell in, and what lies beyond is published again (the
    projectors skip the repeats). The other shares of its own number are no guide: each
    publishes only its own offenders.
    """
    with views.transaction() as tx:
        tx.execute(
            "SELECT upstream, position FROM projection_positions WHERE projection = %s",
            (RELAY,),
        )
        positions = {str(upstream): int(position) for upstream, position in tx.fetchall()}
    own = _upstream_of(share)
    if own in positions:
        return positions[own]
    return min((p for u, p in positions.items() if _parts_of(u) != share.parts), default=0)


def relayed_everything(records: OffenderRecords, views: ViewDatabase, shares: int = 1) -> bool:
    """Whether the relay, run as ``shares`` processes, has published every stored event."""
    return not any(
        records.relay_rows(relay_position(views, share) + 1, 1, share)
        for share in (RelayShare(part, shares) for part in range(shares))
    )


class _InFlight(NamedTuple):
    """A batch sent to the broker whose position is not stored yet."""

    futures: list[Any]
    last_id: int  # the notification id of its last event


class Relay:
    def __init__(
        self,
        records: OffenderRecords,
        views: ViewDatabase,
        producer: Any,
        topic: str,
        batch_size: int = 1000,
        wakeup: Callable[[float], object] | None = None,
        share: RelayShare = EVERY_OFFENDER,
    ) -> None:
        self.records = records
        self.share = share
        self.upstream = _upstream_of(share)
        # Waits when there is nothing to publish; by default a plain sleep (see infra.wakeup).
        self.wakeup = wakeup
        self.views = views
        self.producer = producer
        self.topic = topic
        self.batch_size = batch_size
        self._in_flight: _InFlight | None = None
        with views.transaction() as tx:
            create_common_tables(tx)

    def position(self) -> int:
        return relay_position(self.views, self.share)

    def relay_once(self) -> int:
        """Send the next batch of stored events; return how many were sent.

        Batches are pipelined: this call sends its batch, then waits until the broker has
        every message of the batch sent by the call before, and only then stores that
        batch's position. So the next batch is read from the event store and encoded while
        the broker acknowledges the last one, instead of after. A call with nothing new to
        send settles the batch still in flight. Any error forgets the batch in flight: the
        next call starts again from the stored position, publishing it again.
        """
        try:
            in_flight, self._in_flight = self._in_flight, None
            start = (in_flight.last_id if in_flight else self.position()) + 1
            notifications = page_of_whole_runs(self._read, start, self.batch_size)
            sent = self._send(notifications) if notifications else None
            if in_flight is not None:
                if sent is None:
                    self.producer.flush()  # nothing follows it: send it without lingering
                self._settle(in_flight)
            self._in_flight = sent
            return len(notifications)
        except BaseException:
            self._in_flight = None
            raise

    def _read(self, start: int, limit: int) -> list[RelayRow]:
        return self.records.relay_rows(start, limit, self.share)

    def _send(self, notifications: Sequence[RelayRow]) -> _InFlight:
        """Send a page that ends at the end of an offender's run (``page_of_whole_runs``):
        each message followed by its offender's next event in the page says so in a header
        (``RUN_CONTINUES``), so that a projector never judges half a run (see
        ``consumers.projector``), wherever its fetches end."""
        mapper = self.records.mapper
        futures = []
        last = len(notifications) - 1
        for index, notification in enumerate(notifications):
            continues = (
                index < last
                and notifications[index + 1].originator_id == notification.originator_id
            )
            futures.append(
                self.producer.send(
                    self.topic,
                    key=notification.originator_id.encode(),
                    value=encode_stored(notification, mapper),
                    headers=[RUN_CONTINUES] if continues else None,
                )
            )
        return _InFlight(futures, notifications[-1].id)

    def _settle(self, batch: _InFlight) -> None:
        for future in batch.futures:
            future.get(timeout=30)  # raises if the broker did not take a message
        with self.views.transaction() as tx:
            write_position(tx, RELAY, self.upstream, batch.last_id)

    def settle_in_flight(self) -> None:
        """Wait until the broker has the batch in flight, then store its position."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            self.producer.flush()
            self._settle(in_flight)

    def run(self, shutdown: Shutdown, idle_wait: float = 0.2) -> None:
        log.info(
            "relay started",
            topic=self.topic,
            position=self.position(),
            share=f"{self.share.part + 1} of {self.share.parts}",
        )
        try:
            while not shutdown.requested:
                sent = with_retries(self.relay_once, shutdown, "relay")
                if sent:
                    log.debug("relayed", events=sent)
                else:
                    (self.wakeup or shutdown.wait)(idle_wait)
            # Asked to stop: store the position of what was sent, so a restart does not
            # send it again (it would be harmless, as after a crash, but needless).
            with_retries(self.settle_in_flight, shutdown, "relay")
        except Stopped:
            pass  # the position was not moved: the batch will be published again
        finally:
            self.producer.close()
        log.info("relay stopped")
