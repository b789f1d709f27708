"""One contract for the event store, run against SQLite and real PostgreSQL."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from consumers.ingest import IngestService, StillConflicting, Verdict
from consumers.runtime import _transient_errors
from domain import events as ev
from domain.offender import KnownEvent, Offender
from tests.builders import History
from tests.conftest import TrackerFactory


def lifecycle(ref: str = "WM-000001") -> History:
    h = History(ref)
    h.add("custody.received", "2003-01-10T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.category-assigned", "2003-01-11T10:00:00+00:00", category=1)
    h.add("mappa.level-changed", "2003-01-12T10:00:00+00:00", level=2)
    h.add("custody.released", "2004-04-01T10:00:00+01:00", releaseType="licence", toBcu="Hereford")
    return h


def test_stored_offenders_read_back_with_the_same_state(tracker_factory: TrackerFactory) -> None:
    tracker = tracker_factory()
    h = lifecycle()
    results = tracker.ingest_service().ingest(list(enumerate(h.facts(), start=1)))
    assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 4
    reader = tracker_factory()
    offender = reader.records.offender(ev.offender_id_for("WM-000001"))
    expected = Offender(mappa_ref="WM-000001")
    for fact in h.facts():
        expected.record(fact)
    assert offender.state == expected.state
    assert [e.event_id for e in offender.history] == [d["eventId"] for d in h.documents]


def test_the_event_index_knows_each_stored_event_and_its_offender(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    h = lifecycle()
    tracker.ingest_service().ingest(list(enumerate(h.facts())))
    known = tracker.records.known_events([d["eventId"] for d in h.documents] + ["unknown"])
    offender_id = ev.offender_id_for("WM-000001")
    assert known == {d["eventId"]: KnownEvent(offender_id, d["eventType"]) for d in h.documents}


def test_the_store_refuses_a_second_copy_of_an_event_id(tracker_factory: TrackerFactory) -> None:
    tracker = tracker_factory()
    h = lifecycle()
    first = h.facts()[0]
    tracker.ingest_service().ingest([(1, first)])
    # Another offender's stream, but the same eventId: only the index stands in the way.
    impostor = Offender(mappa_ref="WM-000002")
    with pytest.raises(IntegrityError):
        tracker.records.save_batch(
            [impostor], [(first.event_id, str(impostor.id), "custody.received")], None
        )
    assert tracker.records.known_events([first.event_id])[first.event_id].offender_id == (
        ev.offender_id_for("WM-000001")
    )


def test_an_event_id_already_stored_for_another_offender_is_a_duplicate(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    first = lifecycle("WM-000001")
    tracker.ingest_service().ingest([(1, first.facts()[0])])
    resent = lifecycle("WM-000002")
    resent.documents[0]["eventId"] = first.documents[0]["eventId"]
    [result] = tracker.ingest_service().ingest([(1, resent.facts()[0])])
    assert result.verdict is Verdict.DUPLICATE


def test_a_consumer_position_is_stored_in_the_same_commit_as_the_events(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory()
    h = lifecycle()
    tracker.ingest_service().ingest(
        list(enumerate(h.facts())), tracking=Tracking("mappa.inbound.v1-0", 41)
    )
    assert tracker.records.recorder.max_tracking_id("mappa.inbound.v1-0") == 41
    assert tracker.max_notification_id() > 0


def test_two_writers_deciding_on_one_offender_at_once_lose_no_event(
    tracker_factory: TrackerFactory,
) -> None:
    first_writer, second_writer = tracker_factory(), tracker_factory()
    h = lifecycle()
    base, from_first, from_second = h.facts()[0], h.facts()[1], h.facts()[2]
    first_writer.ingest_service().ingest([(1, base)])

    class InterruptedService(IngestService):
        """Lets the first writer commit between this writer's decision and its save."""

        interrupted = False

        def _decide(self, batch):  # type: ignore[no-untyped-def]
            decided = super()._decide(batch)
            if not self.interrupted:
                self.interrupted = True
                first_writer.ingest_service().ingest([(1, from_first)])
            return decided

    results = InterruptedService(second_writer.records).ingest([(1, from_second)])
    assert [r.verdict for r in results] == [Verdict.ACCEPTED]
    offender = tracker_factory().records.offender(ev.offender_id_for("WM-000001"))
    assert {e.event_id for e in offender.history} == {
        base.event_id,
        from_first.event_id,
        from_second.event_id,
    }


def test_a_batch_refused_at_every_attempt_gives_up_with_an_error_consumers_wait_out(
    tracker_factory: TrackerFactory,
) -> None:
    # Another writer has stored the consumer's position past this batch's: deciding the
    # same batch again can never be saved. The consumer's retry policy must wait it out
    # (and read its position afresh), not stop the process.
    tracker = tracker_factory()
    first, second = lifecycle("WM-000001").facts(), lifecycle("WM-000002").facts()
    tracker.ingest_service().ingest(list(enumerate(first)), tracking=Tracking("inbound-0", 50))
    with pytest.raises(StillConflicting) as refused:
        tracker.ingest_service().ingest(list(enumerate(second)), tracking=Tracking("inbound-0", 41))
    assert isinstance(refused.value, _transient_errors())
    assert tracker.records.recorder.max_tracking_id("inbound-0") == 50
    assert tracker.records.offenders([ev.offender_id_for("WM-000002")]) == {}
