"""Ingest: decide reported facts on their offenders and store them, a batch at a time.

Every path in (file, Kafka, HTTP) ends here, so every path answers the same way. A batch is
one transaction: all the offenders it touches are saved together (with the eventId index
rows, and the consumer's position when there is one), which is where throughput comes from
on an event store that locks its table per insert.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import structlog
from eventsourcing.persistence import IntegrityError, Tracking

from domain.errors import DomainError
from domain.offender import KnownEvent, Offender, Outcome, ReportedFact
from infra.eventstore import IndexRow, OffenderRecords

log = structlog.get_logger(__name__)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Result:
    """What became of one document (``item`` is its line number, offset or index)."""

    item: int
    verdict: Verdict
    event_id: str | None = None
    message: str | None = None
    queries: tuple[str, ...] = ()


@dataclass
class Summary:
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    queried: int = 0
    rejections: list[Result] = field(default_factory=list)

    def add(self, result: Result) -> None:
        if result.verdict is Verdict.ACCEPTED:
            self.accepted += 1
            self.queried += 1 if result.queries else 0
        elif result.verdict is Verdict.DUPLICATE:
            self.duplicate += 1
        else:
            self.rejected += 1
            self.rejections.append(result)

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "queried": self.queried,
        }


class StillConflicting(IntegrityError):
    """A batch refused by the store at every attempt. Another writer may have stored the
    same messages (and moved the consumer's position past them), or the database went away
    mid-save (the library then reports a tracking write it could not confirm as a conflict).
    Either way deciding the same batch again at once cannot succeed: a consumer's retry
    policy waits it out and reads its position and the batch afresh (``consumers.runtime``
    counts it, an ``IntegrityError``, among the transient errors)."""


class IngestService:
    """Decides and stores batches of reported facts."""

    MAX_ATTEMPTS = 5
    CACHE_SIZE = 20_000

    def __init__(self, records: OffenderRecords) -> None:
        self.records = records
        # Offenders as last saved by this service. Another writer may have moved one on
        # since: then the save is refused and the batch decided again from the store.
        self._cache: OrderedDict[UUID, Offender] = OrderedDict()
        self.last_timings: dict[str, float] = {}

    def ingest(
        self,
        batch: Sequence[tuple[int, ReportedFact]],
        tracking: Tracking | Sequence[Tracking] | None = None,
        before_commit: Callable[[list[Result]], None] | None = None,
    ) -> list[Result]:
        """Decide and store ``batch`` atomically, with ``tracking`` (a consumer's position in
        each upstream the batch came from) in the same commit.

        Another writer may commit to the same offender first; the store's primary key then
        refuses our save, and we decide the whole batch again on the new versions.
        ``before_commit`` sees the verdicts before anything is stored (the Kafka consumer
        sends rejections to the dead-letter topic then, so none is lost to a crash).
        """
        refused: IntegrityError | None = None
        for attempt in range(1, self.MAX_ATTEMPTS + 1):
            try:
                started = time.perf_counter()
                results, offenders, index_rows = self._decide(batch)
                decided = time.perf_counter()
                if before_commit is not None:
                    before_commit(results)
                told = time.perf_counter()
                if offenders or tracking:
                    self.records.save_batch(offenders, index_rows, tracking)
                # Where the last batch's time went (seconds), for a consumer to report a
                # slow one: deciding (loading offenders included), the caller's
                # ``before_commit``, storing and committing.
                self.last_timings = {
                    "decide": decided - started,
                    "before_commit": told - decided,
                    "store": time.perf_counter() - told,
                    "attempts": attempt,
                }
            except IntegrityError as error:
                log.warning("concurrent write, deciding again", attempt=attempt, error=str(error))
                self._cache.clear()
                refused = error
                continue
            except BaseException:
                # Cached offenders may hold decisions that were never stored.
                self._cache.clear()
                raise
            self._remember(offenders)
            return results
        raise StillConflicting(
            f"batch still conflicting after {self.MAX_ATTEMPTS} attempts"
        ) from refused

    def _decide(
        self, batch: Sequence[tuple[int, ReportedFact]]
    ) -> tuple[list[Result], list[Offender], list[IndexRow]]:
        wanted = {fact.event_id for _, fact in batch}
        wanted |= {
            str(fact.fields["retracted_event_id"])
            for _, fact in batch
            if "retracted_event_id" in fact.fields
        }
        known = self.records.known_events(wanted)
        offenders = self._load_all({fact.offender_id for _, fact in batch})
        # One recordedAt for the whole batch: it is stored in one transaction, so no reader
        # ever knows one of its facts without the others. Victim alerts are judged on what
        # was known at each moment, so a file's facts are judged together, in occurredAt
        # order, whatever their order in the file (a withdrawal placed before a release
        # but written after it in the same file means no alert).
        recorded_at = datetime.now(UTC)
        index_rows: list[IndexRow] = []
        results: list[Result] = []
        for item, fact in batch:
            if fact.event_id in known:
                results.append(Result(item, Verdict.DUPLICATE, fact.event_id))
                continue
            offender = offenders.get(fact.offender_id) or Offender(mappa_ref=fact.mappa_ref)
            target = known.get(str(fact.fields.get("retracted_event_id")))
            try:
                decision = offender.record(fact, target, recorded_at)
            except DomainError as error:
                results.append(Result(item, Verdict.REJECTED, fact.event_id, str(error)))
                continue
            offenders[offender.id] = offender
            if decision.outcome is Outcome.DUPLICATE:
                results.append(Result(item, Verdict.DUPLICATE, fact.event_id))
                continue
            known[fact.event_id] = KnownEvent(offender.id, fact.event_class.EVENT_TYPE)
            index_rows.append((fact.event_id, str(offender.id), fact.event_class.EVENT_TYPE))
            # Count the document as queried when it is itself the inconsistent fact.
            queries = tuple(q.reason for q in decision.raised if q.about_event_id == fact.event_id)
            results.append(Result(item, Verdict.ACCEPTED, fact.event_id, queries=queries))
        return results, [o for o in offenders.values() if o.pending_events], index_rows

    def senders_of(self, event_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """The agency and area that sent each of these events, for those stored (an event
        not received, or a finding of the tracker's, is not in the answer)."""
        known = self.records.known_events(set(event_ids))
        offenders = self._load_all({event.offender_id for event in known.values()})
        return {
            fact.event_id: (str(fact.source.get("agency")), fact.area)
            for offender in offenders.values()
            for fact in offender.facts
            if fact.event_id in known
        }

    def _load_all(self, offender_ids: set[UUID]) -> dict[UUID, Offender]:
        """The offenders of a batch: from the cache, the rest from the store in one query.

        Cached offenders are used as they are (events are immutable); a batch that fails
        empties the cache, since its offenders may hold decisions that were never stored.
        """
        found: dict[UUID, Offender] = {}
        missing: list[UUID] = []
        for offender_id in offender_ids:
            cached = self._cache.get(offender_id)
            if cached is None:
                missing.append(offender_id)
            else:
                found[offender_id] = cached
        if missing:
            found.update(self.records.offenders(missing))
        return found

    def _remember(self, offenders: Sequence[Offender]) -> None:
        for offender in offenders:
            self._cache[offender.id] = offender
            self._cache.move_to_end(offender.id)
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
