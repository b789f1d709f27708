"""Issue 5's acceptance tests for victim alerts, on SQLite and PostgreSQL.

(a) the alerts raised for a generated history are, one for one, those derived here,
    independently of ``projections/victim_alerts/rules.py``, from the contract
    (``shared/contract/victim-alerts.md``);
(b) replay (``mappa rebuild victim-alerts``), a projector restarted mid-stream and
    duplicate deliveries never raise an alert twice;
(c) a retraction raises exactly one correction per earlier alert;
(d) an area's release-notice rule (P90D for level 3) makes a 40-day notice 50 days short,
    a 100-day one in time, and is the rule of the offender's level at the notice;
(e) a VLO never sees another VLO's alerts, through any command.

The derivation below reads the contract literally: for each event of an alert kind, one
alert per victim enrolled for the offender at the event's ``occurredAt`` (and not
withdrawn), whose ``wants`` includes the kind or who gave none, to that victim's VLO. It
adds only what the contract implies about time: an alert is raised when the tracker could
raise it, on what it knew then (a victim enrolled late is told when the enrolment
arrives; a withdrawal reported after the VLO was told does not untell them), so it is
judged at every moment a document of the offender arrived. An alert whose event (or
enrolment) is later retracted is corrected. Where the contract is silent (a withdrawal at
the very instant of the event), the tracker's documented choice is taken: it wins.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest

from consumers.interchange import parse_object
from domain import events as ev
from infra.bootstrap import NOTIFICATION_LOG, Tracker
from infra.cli import main
from infra.generator import generate_history
from projections.base import Delivery
from projections.ports import Transaction
from projections.victim_alerts import projection as alerts_projection
from projections.victim_alerts.projection import alerts_for
from tests.builders import History
from tests.conftest import TrackerFactory

# --- the independent derivation -------------------------------------------------------------

_KIND_OF_TYPE = {
    "release.notified": "release-due",
    "custody.released": "released",
    "licence.conditions-set": "licence-conditions",
    "licence.recalled": "recalled",
    "custody.absconded": "absconded",
    "custody.transferred": "transferred",
    "parole.decided": "parole-outcome",
    "mappa.case-closed": "case-closing",
}


@dataclass(frozen=True, order=True)
class Expected:
    """One alert to a victim's VLO: what kind, about which event, for which victim, to whom."""

    kind: str
    event_id: str
    victim_ref: str
    vlo_ref: str


def alert_kind(document: Mapping[str, Any]) -> str | None:
    info = document.get("additionalInformation") or {}
    if document["eventType"] == "sentence.varied":
        return "sentence-reduced" if info.get("reason") == "appeal" else None
    if document["eventType"] == "custody.temporary-release":
        return "work-placement" if info.get("purpose") == "work-placement" else None
    return _KIND_OF_TYPE.get(document["eventType"])


def _when(document: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(document["occurredAt"])


def due_alerts(known: Sequence[Mapping[str, Any]], retracted: set[str]) -> set[Expected]:
    """The alerts the contract makes due from one offender's ``known`` documents, as if the
    events in ``retracted`` had never happened."""
    facts = [
        d for d in known if d["eventType"] != "record.retracted" and d["eventId"] not in retracted
    ]
    by_victim: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for d in facts:
        if d["eventType"] in ("victim.enrolled", "victim.withdrawn"):
            by_victim[d["additionalInformation"]["victimRef"]].append(d)
    due: set[Expected] = set()
    for event in facts:
        kind = alert_kind(event)
        if kind is None:
            continue
        for victim_ref, history in by_victim.items():
            before = [d for d in history if _when(d) <= _when(event)]
            if not before:
                continue  # not enrolled yet when it happened
            # The victim's standing at the event: the latest enrolment or withdrawal.
            latest = max(before, key=lambda d: (_when(d), d["eventType"] == "victim.withdrawn"))
            if latest["eventType"] != "victim.enrolled":
                continue
            wants = latest["additionalInformation"].get("wants")
            if wants is None or kind in wants:
                due.add(
                    Expected(kind, event["eventId"], victim_ref,
                             latest["additionalInformation"]["vloRef"])
                )  # fmt: skip
    return due


def expected_alerts(
    documents: Iterable[Mapping[str, Any]], each_fact_alone: bool = False
) -> tuple[set[Expected], set[Expected]]:
    """(alerts raised, alerts corrected) for stored fact documents (with ``recordedAt``).

    ``each_fact_alone``: as if each fact had been known on its own, in store order, rather
    than with those recorded at the same moment (one submission): the most a projector can
    raise when its deliveries split a submission's facts of one offender between batches.
    """
    by_offender: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for d in documents:
        by_offender[mappa_ref(d)].append(d)
    raised: set[Expected] = set()
    still_due: set[Expected] = set()
    for docs in by_offender.values():
        # In arrival order: by recordedAt, and in store order within one submission.
        docs.sort(key=lambda d: datetime.fromisoformat(d["recordedAt"]))
        in_the_end = retracted_by(docs)
        for known in _what_was_known(docs, each_fact_alone):
            raised |= due_alerts(known, retracted_by(known))
            still_due |= due_alerts(known, in_the_end)
    return raised, raised - still_due


def _what_was_known(
    docs: Sequence[Mapping[str, Any]], each_fact_alone: bool = False
) -> list[Sequence[Mapping[str, Any]]]:
    """What the tracker knew of an offender at each moment a fact arrived (facts with one
    ``recordedAt`` known together), and just before each retraction, where the tracker
    raises the alert it then corrects."""
    known: list[Sequence[Mapping[str, Any]]] = []
    for index, d in enumerate(docs):
        if d["eventType"] == "record.retracted":
            known.append(docs[:index])
        if (
            each_fact_alone
            or index + 1 == len(docs)
            or docs[index + 1]["recordedAt"] != d["recordedAt"]
        ):
            known.append(docs[: index + 1])
    return known


def mappa_ref(document: Mapping[str, Any]) -> str:
    identifiers = document["personReference"]["identifiers"]
    return str(next(i["value"] for i in identifiers if i["type"] == "MAPPA"))


def retracted_by(documents: Iterable[Mapping[str, Any]]) -> set[str]:
    return {
        d["additionalInformation"]["eventId"]
        for d in documents
        if d["eventType"] == "record.retracted"
    }


def stored_documents(tracker: Tracker) -> list[dict[str, Any]]:
    """Every fact in the event store, as a document with its ``recordedAt``."""
    documents: list[dict[str, Any]] = []
    position = 0
    while True:
        notifications = tracker.records.recorder.select_notifications(
            start=position + 1, limit=1000
        )
        if not notifications:
            return documents
        for notification in notifications:
            event = tracker.records.mapper.to_domain_event(notification)
            if isinstance(event, ev.InterchangeEvent):
                documents.append(event.to_document(with_recorded_at=True))
        position = notifications[-1].id


# --- reading the alerts on record ----------------------------------------------------------


@dataclass(frozen=True)
class OnRecord:
    raised: list[Expected]  # every victim alert row, corrections excluded
    corrected: list[Expected]  # the alert each correction row corrects
    coordinator: list[tuple[str, str]]  # (kind, event_id) of co-ordinators' alerts


def alerts_on_record(tracker: Tracker) -> OnRecord:
    with tracker.views.transaction() as tx:
        return _alerts_on_record(tx)


def _alerts_on_record(tx: Transaction) -> OnRecord:
    tx.execute(
        "SELECT alert_id, kind, event_id, victim_ref, recipient, corrects_alert_id "
        "FROM victim_alerts ORDER BY sequence"
    )
    rows = tx.fetchall()
    by_id = {row[0]: row for row in rows}
    raised, corrected, coordinator = [], [], []
    for _alert_id, kind, event_id, victim_ref, recipient, corrects in rows:
        if victim_ref is None:
            coordinator.append((kind, event_id))
        elif kind == "correction":
            original = by_id[corrects]
            corrected.append(Expected(original[1], original[2], original[3], original[4]))
        else:
            raised.append(Expected(kind, event_id, victim_ref, recipient))
    return OnRecord(raised, corrected, coordinator)


def assert_as_derived(on_record: OnRecord, documents: list[dict[str, Any]]) -> None:
    raised, corrected = expected_alerts(documents)
    assert len(on_record.raised) == len(set(on_record.raised)), "an alert was raised twice"
    assert len(on_record.corrected) == len(set(on_record.corrected)), "corrected twice"
    missing, extra = raised - set(on_record.raised), set(on_record.raised) - raised
    assert not missing and not extra, f"missing {sorted(missing)[:3]}, extra {sorted(extra)[:3]}"
    assert set(on_record.corrected) == corrected


def assert_derived_from_deliveries(on_record: OnRecord, documents: list[dict[str, Any]]) -> None:
    """As :func:`assert_as_derived`, for a projector fed from Kafka, whose batches may split
    one submission's facts of an offender: every alert and correction derived from whole
    submissions is on record, and nothing beyond what judging each fact alone derives
    (an alert raised on the first part of a submission, that the rest of it would not have
    raised, stands: only a retraction takes an alert back)."""
    least, least_corrected = expected_alerts(documents)
    most, most_corrected = expected_alerts(documents, each_fact_alone=True)
    raised, corrected = set(on_record.raised), set(on_record.corrected)
    assert len(on_record.raised) == len(raised), "an alert was raised twice"
    assert len(on_record.corrected) == len(corrected), "corrected twice"
    assert least <= raised, f"missing {sorted(least - raised)[:3]}"
    assert raised <= most, f"extra {sorted(raised - most)[:3]}"
    assert least_corrected <= corrected <= most_corrected


# --- helpers --------------------------------------------------------------------------------


def ingest(tracker: Tracker, documents: Iterable[Mapping[str, Any]]) -> None:
    tracker.ingest_service().ingest([(n, parse_object(dict(d))) for n, d in enumerate(documents)])


def generated(offenders: int = 300, seed: int = 23) -> list[str]:
    return generate_history("WM", 2001, 2009, offenders, seed=seed, invalid_lines=False)


def use_store(tracker: Tracker, monkeypatch: pytest.MonkeyPatch, areas: Path | None = None) -> None:
    """Point the command line (which reads the environment) at ``tracker``'s store."""
    monkeypatch.setenv("MAPPA_DATA_DIR", str(tracker.settings.data_dir))
    if tracker.settings.database_url:
        monkeypatch.setenv("MAPPA_DATABASE_URL", tracker.settings.database_url)
        monkeypatch.setenv("MAPPA_DATABASE_SCHEMA", tracker.settings.database_schema)
    else:
        monkeypatch.delenv("MAPPA_DATABASE_URL", raising=False)
    monkeypatch.delenv("MAPPA_KAFKA_BOOTSTRAP", raising=False)
    if areas is None:
        monkeypatch.delenv("MAPPA_AREAS", raising=False)
    else:
        monkeypatch.setenv("MAPPA_AREAS", str(areas))


def mappa(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


# --- (a) one for one with the contract ------------------------------------------------------


def test_the_alerts_of_a_generated_history_are_one_for_one_those_the_contract_derives(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory(batch_size=250)
    lines = generated()
    ingest(tracker, (json.loads(line) for line in lines))
    tracker.catch_up()
    documents = stored_documents(tracker)
    assert_as_derived(alerts_on_record(tracker), documents)

    # The history exercises what the contract excludes: events from before an enrolment,
    # after a withdrawal, of kinds a victim's wants leave out, and retracted events.
    raised, corrected = expected_alerts(documents)
    assert len(raised) > 200 and corrected
    before_enrolment, after_withdrawal = excluded_pairs(documents)
    assert before_enrolment and after_withdrawal
    assert not {(a.event_id, a.victim_ref) for a in raised} & (before_enrolment | after_withdrawal)
    assert any(d["additionalInformation"].get("wants") is not None for d in documents)


@pytest.mark.parametrize("batch_size", [7, 40])
def test_judging_only_the_events_from_a_batchs_earliest_fact_on_raises_what_judging_all_does(
    tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    """A batch that retracts nothing has only the events judged that happened at or after
    the earliest fact it adds: every alert on record, every column, in the same order, is
    what judging every event of the history at every batch raises."""
    tracker = tracker_factory(batch_size=batch_size)
    lines = generated()
    # In submissions of 50 lines, as a file is ingested: an offender's facts come in many
    # batches (a catch-up page keeps one submission's facts of an offender together).
    for start in range(0, len(lines), 50):
        ingest(tracker, (json.loads(line) for line in lines[start : start + 50]))
    writer = tracker.writer(alerts_projection.NAME)

    judged_alone = alerts_projection._judged_since
    answers: list[bool] = []

    def counted(history: Any, facts: Any) -> datetime | None:
        since = judged_alone(history, facts)
        answers.append(since is not None and any(fact.occurred < since for fact in facts))
        return since

    monkeypatch.setattr(alerts_projection, "_judged_since", counted)
    tracker.catch_up([alerts_projection.NAME])
    alone = every_alert_column(tracker)

    writer.reset()
    with tracker.views.transaction() as tx:
        tx.execute("DELETE FROM victim_alerts")
    monkeypatch.setattr(alerts_projection, "_judged_since", lambda *_: None)
    tracker.catch_up([alerts_projection.NAME])

    # Both ways of judging were taken, each many times.
    assert answers.count(True) > 25 and answers.count(False) > 25
    assert len(alone) > 200
    assert every_alert_column(tracker) == alone


def every_alert_column(tracker: Tracker) -> list[tuple[Any, ...]]:
    """Every alert on record in the order raised, all but when (by the clock) it was."""
    with tracker.views.transaction() as tx:
        tx.execute(
            "SELECT alert_id, offender_id, kind, recipient, victim_ref, offender_ref, area, "
            "event_id, event_type, occurred_at, recorded_at, late_by_seconds, message, details, "
            "corrects_alert_id, sequence FROM victim_alerts ORDER BY sequence"
        )
        return [tuple(row) for row in tx.fetchall()]


def excluded_pairs(
    documents: Iterable[Mapping[str, Any]],
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(event id, victim) pairs of an alert kind's event and a victim of its offender, where
    the event happened before the enrolment, and where it happened after a withdrawal
    (every document of the offender known, none retracted by then)."""
    by_offender: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for d in documents:
        by_offender[mappa_ref(d)].append(d)
    before, after = set(), set()
    for docs in by_offender.values():
        for event in (d for d in docs if alert_kind(d) and d["eventId"] not in retracted_by(docs)):
            for d in docs:
                victim = (d.get("additionalInformation") or {}).get("victimRef")
                if d["eventType"] == "victim.enrolled" and _when(d) > _when(event):
                    before.add((event["eventId"], victim))
                elif d["eventType"] == "victim.withdrawn" and _when(d) <= _when(event):
                    after.add((event["eventId"], victim))
    return before, after


def test_no_alert_for_a_withdrawn_victim_nor_for_events_before_the_enrolment(
    tracker: Tracker,
) -> None:
    h = History("WM-000100")
    h.add("custody.received", "2004-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("custody.transferred", "2004-02-01T10:00:00+00:00", fromPrison="HMP A", toPrison="HMP B")
    h.add("victim.enrolled", "2004-03-01T10:00:00+00:00", victimRef="V-STAYS", vloRef="VLO-1")
    h.add("victim.enrolled", "2004-03-01T10:00:00+00:00", victimRef="V-GOES", vloRef="VLO-2")
    h.add(
        "victim.enrolled",
        "2004-03-01T10:00:00+00:00",
        victimRef="V-CHOOSY",
        vloRef="VLO-3",
        wants=["released"],
    )
    h.add("victim.withdrawn", "2004-04-01T10:00:00+01:00", victimRef="V-GOES")
    notice = h.add(
        "release.notified",
        "2004-05-01T10:00:00+01:00",
        expectedReleaseDate="2004-09-01",
        releaseType="licence",
    )
    released = h.add("custody.released", "2004-09-01T10:00:00+01:00", releaseType="licence")
    ingest(tracker, h.documents)
    tracker.catch_up()
    assert sorted(
        alerts_on_record(tracker).raised, key=lambda a: (a.event_id, a.victim_ref)
    ) == sorted(
        [
            Expected("release-due", notice["eventId"], "V-STAYS", "VLO-1"),
            Expected("released", released["eventId"], "V-STAYS", "VLO-1"),
            Expected("released", released["eventId"], "V-CHOOSY", "VLO-3"),
        ],
        key=lambda a: (a.event_id, a.victim_ref),
    )
    assert_as_derived(alerts_on_record(tracker), stored_documents(tracker))


# --- (b) never twice: replay, restart, duplicates ------------------------------------------


def a_withdrawal_and_a_level_reported_after_the_events_they_bear_on() -> tuple[
    History, list[dict[str, Any]], dict[str, Any]
]:
    """A victim withdrawn before a release, and a level lowered before a notice, each
    reported after the event it bears on: (history, the two late facts, the release)."""
    h = History("WM-000160")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.level-changed", "2005-01-02T10:00:00+00:00", level=3)
    h.add("victim.enrolled", "2005-01-03T10:00:00+00:00", victimRef="V-GOES", vloRef="VLO-1")
    # 60 days' notice: late for level 3 in WM (P3M), in time for level 2 (P6W).
    h.add(
        "release.notified",
        "2005-03-01T10:00:00+00:00",
        expectedReleaseDate="2005-04-30",
        releaseType="licence",
    )
    released = h.add("custody.released", "2005-04-30T10:00:00+01:00", releaseType="licence")
    late = [
        h.add("victim.withdrawn", "2005-01-20T10:00:00+00:00", victimRef="V-GOES"),
        h.add("mappa.level-changed", "2005-02-01T10:00:00+00:00", level=2),
    ]
    return h, late, released


def test_facts_reported_in_a_later_submission_do_not_untell_what_was_told(
    tracker: Tracker,
) -> None:
    """The same facts with the withdrawal and the level sent afterwards: the VLO and the
    co-ordinator were told when the release and the notice arrived, and nothing told was
    recorded in error, so it stands uncorrected."""
    h, late, released = a_withdrawal_and_a_level_reported_after_the_events_they_bear_on()
    late_ids = {d["eventId"] for d in late}
    ingest(tracker, [d for d in h.documents if d["eventId"] not in late_ids])
    tracker.catch_up()
    ingest(tracker, late)
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    assert Expected("released", released["eventId"], "V-GOES", "VLO-1") in on_record.raised
    assert [kind for kind, _ in on_record.coordinator] == ["late-release-notice"]
    assert on_record.corrected == []
    assert_as_derived(on_record, stored_documents(tracker))


def test_facts_in_one_submission_are_judged_together_whatever_their_order_in_it(
    tracker: Tracker,
) -> None:
    """The same facts in one submission, the withdrawal and the level written after the
    events they bear on: stored in one transaction, they are known from one moment, so the
    victim withdrawn before the notice and the release is told of neither, and the notice is
    judged by the level at it (2: 60 days is in time)."""
    h, late, _ = a_withdrawal_and_a_level_reported_after_the_events_they_bear_on()
    assert h.documents[-len(late) :] == late  # written last
    ingest(tracker, h.documents)
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    assert on_record.raised == []
    assert on_record.coordinator == []
    assert on_record.corrected == []
    assert_as_derived(on_record, stored_documents(tracker))


def test_a_retraction_in_a_submission_takes_back_only_what_rests_on_the_fact_it_retracts(
    tracker: Tracker,
) -> None:
    """One submission: a level 3 offender's notice, 60 days ahead (short for level 3 in WM,
    in time for level 2), an unrelated fact retracted, then the level 2 set before the
    notice. All known at once, the notice was in time: the co-ordinator is told nothing,
    not a late notice and then its correction."""
    h = History("WM-000162")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("mappa.level-changed", "2005-01-02T10:00:00+00:00", level=3)
    varied = h.add("sentence.varied", "2005-01-10T10:00:00+00:00", reason="appeal")
    h.add(
        "release.notified",
        "2005-03-01T10:00:00+00:00",
        expectedReleaseDate="2005-04-30",
        releaseType="licence",
    )
    h.retract(varied, "2005-03-02T10:00:00+00:00")
    h.add("mappa.level-changed", "2005-02-01T10:00:00+00:00", level=2)
    ingest(tracker, h.documents)
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    assert (on_record.coordinator, on_record.corrected) == ([], [])


def test_mappa_ingest_takes_a_file_as_one_submission_beyond_the_batch_size(
    tracker: Tracker,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The file of the test above through the command line, with transactions of three
    documents elsewhere: the file is still stored as one submission, so the withdrawal and
    the level written last count, and nobody is told anything."""
    use_store(tracker, monkeypatch)
    monkeypatch.setenv("MAPPA_BATCH_SIZE", "3")
    h, _, _ = a_withdrawal_and_a_level_reported_after_the_events_they_bear_on()
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(h.lines()) + "\n")
    status, _, _ = mappa(capsys, "ingest", str(path), "--quiet")
    assert status == 0
    on_record = alerts_on_record(tracker)
    assert (on_record.raised, on_record.coordinator, on_record.corrected) == ([], [], [])


def test_a_catch_up_gives_a_projection_one_submissions_facts_together_across_its_pages(
    tracker_factory: TrackerFactory,
) -> None:
    """Pages of three notifications would give the victim-alerts projection the enrolment,
    the notice and the release without the withdrawal stored with them: it would raise an
    alert and then correct it. A page ends only where an offender's run of events does."""
    tracker = tracker_factory(batch_size=3)
    h, _, _ = a_withdrawal_and_a_level_reported_after_the_events_they_bear_on()
    other = History("WM-000161")
    other.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    ingest(tracker, [*h.documents, *other.documents])
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    assert (on_record.raised, on_record.coordinator, on_record.corrected) == ([], [], [])
    assert tracker.writer("victim-alerts").position(NOTIFICATION_LOG) == (
        tracker.max_notification_id()
    )


def test_replay_restart_mid_stream_and_duplicates_never_raise_an_alert_twice(
    tracker_factory: TrackerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = generated(offenders=200, seed=29)
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")
    tracker = tracker_factory()
    ingest(tracker, (json.loads(line) for line in lines))
    notifications = tracker.records.recorder.select_notifications(start=1, limit=100_000)
    deliveries = [
        Delivery(n.id, cast("ev.OffenderEvent", tracker.records.mapper.to_domain_event(n)))
        for n in notifications
    ]
    writer = tracker.writer("victim-alerts")
    # A projector that crashes after each commit and is handed part of its last batch
    # again, over the first half of the log...
    half = len(deliveries) // 2
    for start in range(0, half, 150):
        writer.handle(NOTIFICATION_LOG, deliveries[max(0, start - 60) : start + 150])
    tracker.close()
    # ... then restarts (a new process on the same store) and goes on from its position.
    restarted = tracker_factory()
    restarted.catch_up(["victim-alerts"])
    # A relay that crashed mid-batch publishes everything again, at new positions.
    assert restarted.writer("victim-alerts").handle("republished-0", deliveries) == 0
    documents = stored_documents(restarted)
    on_record = alerts_on_record(restarted)
    assert_as_derived(on_record, documents)

    use_store(restarted, monkeypatch)
    status, out, err = mappa(capsys, "rebuild", "victim-alerts", "--quiet")
    assert status == 0, err
    status, out, err = mappa(capsys, "ingest", str(history), "--json", "--quiet")
    assert (status, json.loads(out)["duplicate"]) == (0, len(lines)), err
    after = alerts_on_record(restarted)
    assert sorted(map(str, after.raised)) == sorted(map(str, on_record.raised))
    assert sorted(map(str, after.corrected)) == sorted(map(str, on_record.corrected))
    assert sorted(after.coordinator) == sorted(on_record.coordinator)
    with restarted.views.transaction() as tx:
        tx.execute("SELECT COUNT(*), COUNT(DISTINCT alert_id) FROM victim_alerts")
        total, distinct = tx.fetchone() or (0, 0)
    assert (
        total
        == distinct
        == len(on_record.raised) + len(on_record.corrected) + len(on_record.coordinator)
    )


def facts_arriving_after_the_event_they_address() -> list[History]:
    """Alerts that became due only when a fact about an earlier moment arrived late (an
    enrolment; a level), with an unrelated retraction arriving in between."""
    victim = History("WM-000150")
    victim.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    victim.add(
        "custody.transferred", "2005-07-02T10:00:00+01:00", fromPrison="HMP A", toPrison="HMP B"
    )
    wrong = victim.add(
        "custody.transferred", "2005-07-25T10:00:00+01:00", fromPrison="HMP B", toPrison="HMP C"
    )
    victim.retract(wrong, "2005-09-20T10:00:00+01:00")
    victim.add("victim.enrolled", "2005-05-06T10:00:00+01:00", victimRef="V-L", vloRef="VLO-L")
    level = History("WM-000151")
    level.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    wrong = level.add(
        "custody.transferred", "2005-02-01T10:00:00+00:00", fromPrison="HMP A", toPrison="HMP B"
    )
    level.add(
        "release.notified",
        "2005-03-01T10:00:00+00:00",
        expectedReleaseDate="2005-04-10",
        releaseType="licence",
    )
    level.retract(wrong, "2005-03-02T10:00:00+00:00")
    level.add("mappa.level-changed", "2005-02-15T10:00:00+00:00", level=3)
    return [victim, level]


def test_a_rebuild_does_not_correct_alerts_that_rest_on_facts_reported_late(
    tracker: Tracker,
) -> None:
    ingest(tracker, (d for h in facts_arriving_after_the_event_they_address() for d in h.documents))
    tracker.catch_up()
    live = alerts_on_record(tracker)
    assert len(live.raised) == 1 and len(live.coordinator) == 1 and not live.corrected
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == live


# --- (c) one correction per earlier alert ---------------------------------------------------


def two_victims_and_a_retracted_notice() -> tuple[History, dict[str, Any], dict[str, Any]]:
    h = History("WM-900200")
    h.add("mappa.level-changed", "2004-01-01T10:00:00+00:00", level=3)
    h.add("custody.received", "2004-01-02T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("victim.enrolled", "2004-02-01T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    h.add(
        "victim.enrolled",
        "2004-02-01T10:00:00+00:00",
        victimRef="V-2",
        vloRef="VLO-B",
        wants=["release-due"],
    )
    # 20 days' notice at level 3: late in WM (P3M), so the co-ordinator is told too.
    notice = h.add(
        "release.notified",
        "2004-06-01T10:00:00+01:00",
        expectedReleaseDate="2004-06-21",
        releaseType="licence",
    )
    conditions = h.add(
        "licence.conditions-set",
        "2004-06-10T10:00:00+01:00",
        conditions=[{"code": "non-contact", "text": "no contact", "protectsVictim": True}],
    )
    return h, notice, conditions


def test_a_retraction_raises_exactly_one_correction_per_earlier_alert(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    h, notice, conditions = two_victims_and_a_retracted_notice()
    ingest(tracker, h.documents)
    tracker.catch_up()
    before = alerts_on_record(tracker)
    about_notice = [a for a in before.raised if a.event_id == notice["eventId"]]
    assert (
        len(about_notice) == 2 and ("late-release-notice", notice["eventId"]) in before.coordinator
    )

    ingest(tracker, [h.retract(notice, "2004-06-02T10:00:00+01:00")])
    tracker.catch_up()
    # And a retraction arriving in the same batch as its event: raised, then corrected.
    late = h.add("custody.absconded", "2004-06-15T10:00:00+01:00")
    ingest(tracker, [late, h.retract(late, "2004-06-16T10:00:00+01:00")])
    tracker.catch_up()

    def corrections() -> list[tuple[str, str, str]]:
        with tracker.views.transaction() as tx:
            tx.execute(
                "SELECT event_id, victim_ref, recipient FROM victim_alerts "
                "WHERE kind = 'correction'"
            )
            return sorted((str(e), v or "-", str(r)) for e, v, r in tx.fetchall())

    assert corrections() == sorted(
        [
            (notice["eventId"], "V-1", "VLO-A"),
            (notice["eventId"], "V-2", "VLO-B"),
            (notice["eventId"], "-", "coordinator:WM"),
            (late["eventId"], "V-1", "VLO-A"),  # V-2 wants release-due only
        ]
    )
    assert conditions["eventId"] not in {e for e, _, _ in corrections()}
    once = corrections()
    tracker.rebuild("victim-alerts")
    ingest(tracker, h.documents)  # every one a duplicate now
    tracker.catch_up()
    assert corrections() == once
    assert_as_derived(alerts_on_record(tracker), stored_documents(tracker))


def test_retracting_the_enrolment_that_chose_the_vlo_corrects_the_alert_and_tells_the_right_one(
    tracker: Tracker,
) -> None:
    """The victim's enrolment with VLO-A (which replaced one with VLO-B) is retracted after
    the release was told to VLO-A: as if it had not happened, the victim was VLO-B's, so
    VLO-A gets a correction and VLO-B the alert."""
    h = History("WM-000180")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("victim.enrolled", "2005-01-02T10:00:00+00:00", victimRef="V-1", vloRef="VLO-B")
    again = h.add("victim.enrolled", "2005-01-05T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    released = h.add("custody.released", "2005-01-10T10:00:00+00:00", releaseType="licence")
    ingest(tracker, h.documents)
    tracker.catch_up()
    told_a = Expected("released", released["eventId"], "V-1", "VLO-A")
    assert alerts_on_record(tracker).raised == [told_a]

    ingest(tracker, [h.retract(again, "2005-01-12T10:00:00+00:00")])
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    told_b = Expected("released", released["eventId"], "V-1", "VLO-B")
    assert sorted(on_record.raised) == sorted([told_a, told_b])
    assert on_record.corrected == [told_a]
    with tracker.views.transaction() as tx:
        assert [a.alert.kind for a in alerts_for(tx, "VLO-A")] == ["released", "correction"]
        assert [a.alert.kind for a in alerts_for(tx, "VLO-B")] == ["released"]
    assert_as_derived(on_record, stored_documents(tracker))
    once = alerts_on_record(tracker)
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == once  # a rebuild raises and corrects nothing again


def test_an_alert_corrected_and_then_due_again_through_another_enrolment_is_raised_anew(
    tracker: Tracker,
) -> None:
    """The enrolment behind an alert is retracted (the VLO is told to disregard it); then an
    earlier enrolment of the same victim is reported: they were enrolled at the release
    after all, so the VLO is told again, and a rebuild repeats none of it."""
    h = History("WM-000190")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    wrong = h.add("victim.enrolled", "2005-01-05T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    h.add("custody.released", "2005-01-10T10:00:00+00:00", releaseType="licence")
    ingest(tracker, h.documents)
    tracker.catch_up()
    ingest(tracker, [h.retract(wrong, "2005-01-12T10:00:00+00:00")])
    tracker.catch_up()
    earlier = h.add("victim.enrolled", "2005-01-03T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    ingest(tracker, [earlier])
    tracker.catch_up()

    def listed() -> list[tuple[str, str]]:
        with tracker.views.transaction() as tx:
            return [
                (a.alert.kind, str(a.alert.details.get("enrolmentEventId", "-")))
                for a in alerts_for(tx, "VLO-A")
            ]

    told = listed()
    assert told == [
        ("released", wrong["eventId"]),
        ("correction", "-"),
        ("released", earlier["eventId"]),
    ]
    tracker.rebuild("victim-alerts")
    assert listed() == told


def test_a_retracted_withdrawal_counts_from_when_the_retraction_is_recorded(
    tracker: Tracker,
) -> None:
    """Withdrawn when the recall arrived; enrolled again with VLO-B, for transfers only,
    before the withdrawal is retracted. "As if it had not happened, from the time the
    retraction is recorded": from then on the victim's standing at the recall is VLO-B's
    enrolment, which does not want it, so no one is told, VLO-A least of all."""
    h = History("WM-000196")
    h.add("victim.enrolled", "2005-01-16T12:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    withdrawal = h.add("victim.withdrawn", "2005-04-06T07:30:00+00:00", victimRef="V-1")
    h.add("licence.recalled", "2005-05-09T20:30:00+00:00", reason="other")
    ingest(tracker, h.documents)
    tracker.catch_up()
    again = h.add(
        "victim.enrolled",
        "2005-04-11T10:00:00+00:00",
        victimRef="V-1",
        vloRef="VLO-B",
        wants=["transferred"],
    )
    ingest(tracker, [again])
    tracker.catch_up()
    ingest(tracker, [h.retract(withdrawal, "2005-07-01T00:00:00+00:00")])
    tracker.catch_up()

    assert alerts_on_record(tracker) == OnRecord([], [], [])
    assert_as_derived(alerts_on_record(tracker), stored_documents(tracker))
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == OnRecord([], [], [])


def test_the_same_facts_in_one_submission_tell_the_vlo_once_with_nothing_to_correct(
    tracker: Tracker,
) -> None:
    """The facts of the test above in one submission: the earlier enrolment, with the same
    VLO, was known from the moment the release was, so what the VLO was told stands when
    the other enrolment is retracted: told once, nothing corrected, and a rebuild agrees."""
    h = History("WM-000191")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    wrong = h.add("victim.enrolled", "2005-01-05T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    released = h.add("custody.released", "2005-01-10T10:00:00+00:00", releaseType="licence")
    h.retract(wrong, "2005-01-12T10:00:00+00:00")
    h.add("victim.enrolled", "2005-01-03T10:00:00+00:00", victimRef="V-1", vloRef="VLO-A")
    ingest(tracker, h.documents)
    tracker.catch_up()

    def told() -> list[tuple[str, str, str]]:
        with tracker.views.transaction() as tx:
            return [
                (a.alert.kind, a.alert.event_id, a.alert.recipient) for a in alerts_for(tx, "VLO-A")
            ]

    assert told() == [("released", released["eventId"], "VLO-A")]
    tracker.rebuild("victim-alerts")
    assert told() == [("released", released["eventId"], "VLO-A")]


def test_a_vlos_list_shows_each_correction_after_the_alert_it_corrects(
    tracker: Tracker,
) -> None:
    """Raised in one batch, an alert and its correction share every time: the list, oldest
    first, still puts the alert first (eight pairs, so that ids sorting either way occur)."""
    h = History("WM-000170")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("victim.enrolled", "2005-01-02T10:00:00+00:00", victimRef="V-1", vloRef="VLO-1")
    for day in range(10, 18):
        moved = h.add(
            "custody.transferred",
            f"2005-02-{day}T10:00:00+00:00",
            fromPrison="HMP A",
            toPrison="HMP A",
        )
        h.retract(moved, f"2005-02-{day}T11:00:00+00:00")
    ingest(tracker, h.documents)
    tracker.catch_up()
    with tracker.views.transaction() as tx:
        listed = [raised.alert for raised in alerts_for(tx, "VLO-1")]
    assert len(listed) == 16
    position = {alert.alert_id: n for n, alert in enumerate(listed)}
    corrections = [a for a in listed if a.kind == "correction"]
    assert len(corrections) == 8
    assert all(position[a.corrects_alert_id] < position[a.alert_id] for a in corrections)


def test_an_event_retracted_before_it_arrived_raises_nothing_to_correct(tracker: Tracker) -> None:
    h, notice, _ = two_victims_and_a_retracted_notice()
    retraction = h.retract(notice, "2004-06-02T10:00:00+01:00")
    ingest(tracker, [d for d in h.documents if d is not notice])
    tracker.catch_up()
    ingest(tracker, [notice])
    tracker.catch_up()
    on_record = alerts_on_record(tracker)
    assert notice["eventId"] not in {a.event_id for a in on_record.raised}
    assert on_record.corrected == [] and retraction["eventId"]


# --- (d) the area's release-notice rule --------------------------------------------------------


@pytest.fixture
def p90d_areas(tmp_path: Path) -> Path:
    """The shipped areas, with West Mercia asking 90 days for level 3 and 30 for level 2."""
    shipped = Path(__file__).resolve().parents[2] / "infra" / "areas.json"
    path = tmp_path / "areas.json"
    shutil.copy(shipped, path)
    data = json.loads(path.read_text())
    for area in data["areas"]:
        if area["code"] == "WM":
            area["releaseNoticeLeadTimes"] = {"3": "P90D", "2": "P30D"}
    path.write_text(json.dumps(data))
    return path


def offender_given_notice(
    ref: str, level: int, days: int, later_level: int | None = None, late_report: bool = False
) -> tuple[History, dict[str, Any]]:
    """At ``level`` when notice was given on 1 March 2005 of a release ``days`` later; at
    ``later_level`` ten days after the notice (reported before the notice when
    ``late_report``)."""
    from datetime import date, timedelta

    h = History(ref)
    h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=level)
    h.add("custody.received", "2005-01-02T10:00:00+00:00", prison="HMP A", reason="sentence")
    release = (date(2005, 3, 1) + timedelta(days=days)).isoformat()
    notice = {
        "eventType": "release.notified",
        "at": "2005-03-01T10:00:00+00:00",
        "info": {"expectedReleaseDate": release, "releaseType": "licence"},
    }
    change = (
        {"eventType": "mappa.level-changed", "at": "2005-03-11T10:00:00+00:00",
         "info": {"level": later_level}}
        if later_level
        else None
    )  # fmt: skip
    order = [change, notice] if late_report else [notice, change]
    added: dict[str, Any] = {}
    for item in order:
        if item is not None:
            added[item["eventType"]] = h.add(item["eventType"], item["at"], **item["info"])
    return h, added["release.notified"]


def test_a_p90d_rule_makes_a_40_day_notice_50_days_short_by_the_level_at_the_notice(
    tracker_factory: TrackerFactory,
    p90d_areas: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tracker = tracker_factory(areas=p90d_areas)
    short, short_notice = offender_given_notice("WM-000301", level=3, days=40)
    timely, _ = offender_given_notice("WM-000302", level=3, days=100)
    # At level 2 (30 days asked) when the notice was given: raised to 3 later, even when
    # that was reported first, the notice was in time.
    raised_later, _ = offender_given_notice("WM-000303", level=2, days=40, later_level=3)
    reported_first, _ = offender_given_notice(
        "WM-000304", level=2, days=40, later_level=3, late_report=True
    )
    # At level 3 when given: lowered to 1 later, the notice was still late.
    lowered, lowered_notice = offender_given_notice("WM-000305", level=3, days=40, later_level=1)
    for h in (short, timely, raised_later, reported_first, lowered):
        ingest(tracker, h.documents)
    tracker.catch_up()

    use_store(tracker, monkeypatch, areas=p90d_areas)
    status, out, err = mappa(capsys, "alerts", "--coordinator", "WM", "--format", "json")
    assert status == 0, err
    alerts = json.loads(out)
    assert sorted((a["offender_ref"], a["event_id"]) for a in alerts) == sorted(
        [("WM-000301", short_notice["eventId"]), ("WM-000305", lowered_notice["eventId"])]
    )
    for alert in alerts:
        assert alert["kind"] == "late-release-notice"
        assert alert["details"]["daysShort"] == 50
        assert (alert["details"]["ruleDuration"], alert["details"]["level"]) == ("P90D", 3)
        assert "50 days short" in alert["message"]
    status, out, _ = mappa(capsys, "alerts", "--coordinator", "WM")
    assert out.count("50 days short") == 2


def test_the_shipped_rule_of_three_months_is_the_default(tracker: Tracker) -> None:
    short, _ = offender_given_notice("WM-000306", level=3, days=40)
    ingest(tracker, short.documents)
    tracker.catch_up()
    with tracker.views.transaction() as tx:
        tx.execute("SELECT details FROM victim_alerts WHERE kind = 'late-release-notice'")
        (details,) = [json.loads(row[0]) for row in tx.fetchall()]
    # 1 March + P3M is 1 June: 92 days after 1 March, so a 40-day notice is 52 days short.
    assert (details["ruleDuration"], details["daysShort"]) == ("P3M", 52)


def test_a_notice_given_at_the_end_of_the_calendar_is_alerted_and_the_alerts_go_on(
    tracker: Tracker,
) -> None:
    # Three months from 20 December 9999 is a day Python's dates do not hold: judging the
    # notice once failed, and the projection stayed at that fact, raising nothing after it.
    history = History("WM-000307")
    history.add("mappa.level-changed", "9999-01-01T10:00:00+00:00", level=3)
    history.add("victim.enrolled", "9999-02-01T10:00:00+00:00", victimRef="V-E1", vloRef="VLO-E")
    history.add(
        "release.notified",
        "9999-12-20T00:00:00+00:00",
        expectedReleaseDate="9999-12-31",
        releaseType="licence",
    )
    ingest(tracker, history.documents)
    tracker.catch_up()
    later = History("WM-000307", namespace="tests-later")
    later.add("custody.absconded", "9999-12-21T10:00:00+00:00")
    ingest(tracker, later.documents)
    tracker.catch_up()

    with tracker.views.transaction() as tx:
        tx.execute("SELECT kind, details FROM victim_alerts ORDER BY sequence")
        raised = [(kind, json.loads(details)) for kind, details in tx.fetchall()]
    assert [kind for kind, _ in raised] == ["release-due", "late-release-notice", "absconded"]
    late = raised[1][1]
    assert (late["inTimeForReleaseFrom"], late["daysShort"]) == ("10000-03-20", 80)
    assert tracker.writers["victim-alerts"].position(NOTIFICATION_LOG) == (
        tracker.max_notification_id()
    )


# --- (e) a VLO sees only their own victims' alerts --------------------------------------------


def two_vlos() -> list[History]:
    shared = History("WM-000400")
    shared.add("custody.received", "2004-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    shared.add("victim.enrolled", "2004-02-01T10:00:00+00:00", victimRef="V-A1", vloRef="VLO-A")
    shared.add("victim.enrolled", "2004-02-01T10:00:00+00:00", victimRef="V-B1", vloRef="VLO-B")
    shared.add(
        "release.notified",
        "2004-03-01T10:00:00+00:00",
        expectedReleaseDate="2004-12-01",
        releaseType="licence",
    )
    shared.add("custody.released", "2004-12-01T10:00:00+00:00", releaseType="licence")
    theirs = History("WM-000401")
    theirs.add("custody.received", "2004-01-01T10:00:00+00:00", prison="HMP B", reason="sentence")
    theirs.add("victim.enrolled", "2004-02-01T10:00:00+00:00", victimRef="V-B2", vloRef="VLO-B")
    theirs.add("custody.absconded", "2004-05-01T10:00:00+01:00")
    return [shared, theirs]


def test_a_vlo_never_sees_another_vlos_alerts_through_any_command(
    tracker: Tracker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(tracker, (d for h in two_vlos() for d in h.documents))
    tracker.catch_up()
    use_store(tracker, monkeypatch)
    others = ("V-B1", "V-B2", "VLO-B")

    status, out, err = mappa(capsys, "alerts", "--vlo", "VLO-A", "--format", "json")
    assert status == 0, err
    mine = json.loads(out)
    assert len(mine) == 2
    assert {a["recipient"] for a in mine} == {"VLO-A"} and {a["victim_ref"] for a in mine} == {
        "V-A1"
    }
    assert not any(other in out for other in others)
    for listing in (["--all"], ["--all", "--format", "json"], ["--limit", "1"]):
        status, out, _ = mappa(capsys, "alerts", "--vlo", "VLO-A", *listing)
        assert status == 0 and "V-A1" in out and not any(other in out for other in others)

    status, out, _ = mappa(capsys, "alerts", "--vlo", "VLO-B", "--format", "json")
    theirs = json.loads(out)
    assert {a["victim_ref"] for a in theirs} == {"V-B1", "V-B2"} and "V-A1" not in out
    status, _, err = mappa(
        capsys, "alerts", "done", theirs[0]["alert_id"], "--by", "A. Officer", "--vlo", "VLO-A"
    )
    assert status == 1 and "for you" in err
    status, out, _ = mappa(capsys, "alerts", "--vlo", "VLO-B", "--format", "json")
    assert [a["done_at"] for a in json.loads(out)] == [None] * 3, "A worked B's alert"

    status, out, _ = mappa(
        capsys, "alerts", "done", mine[0]["alert_id"], "--by", "A. Officer", "--vlo", "VLO-A"
    )
    assert status == 0 and "marked done" in out
    status, out, _ = mappa(capsys, "alerts", "--vlo", "VLO-A", "--format", "json")
    assert [a["alert_id"] for a in json.loads(out)] == [mine[1]["alert_id"]]

    # No other command lists victims at all.
    for command in (
        ["alerts", "--coordinator", "WM", "--format", "json"],
        ["alerts", "--recipients"],
        ["caseload", "--area", "WM", "--format", "json"],
        ["caseload", "--area", "WM", "--on", "2004-06-01", "--format", "csv"],
        ["queries", "--area", "WM", "--all", "--format", "json"],
        ["return", "--area", "WM", "--year", "2004", "--format", "json"],
    ):
        status, out, err = mappa(capsys, *command)
        assert status == 0, (command, err)
        assert not any(ref in out for ref in ("V-A1", "V-B1", "V-B2")), command


def notified(h: History, at: str, expected: str) -> None:
    h.add("release.notified", at, expectedReleaseDate=expected, releaseType="licence")


def coordinators_alerts(tracker: Tracker, area: str) -> list[tuple[str, Any]]:
    with tracker.views.transaction() as tx:
        return [
            (a.alert.kind, a.alert.details.get("daysShort"))
            for a in alerts_for(tx, f"coordinator:{area}", include_done=True)
        ]


def test_retracting_the_earliest_fact_corrects_a_late_notice_alert_to_the_area_it_gave(
    tracker: Tracker,
) -> None:
    """The offender's earliest fact made Durham their first area, so a notice 111 days
    ahead was short of Durham's six months; that fact is retracted: West Mercia was the
    area, whose three months the notice met, so Durham is told the alert was in error."""
    h = History("WM-000192")
    earliest = h.add("mappa.category-assigned", "2004-12-01T10:00:00+00:00", category=2)
    earliest["area"] = "DUR"
    h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=3)
    notified(h, "2005-01-10T10:00:00+00:00", expected="2005-05-01")
    ingest(tracker, h.documents)
    tracker.catch_up()
    assert [kind for kind, _ in coordinators_alerts(tracker, "DUR")] == ["late-release-notice"]

    ingest(tracker, [h.retract(earliest, "2005-02-01T10:00:00+00:00")])
    tracker.catch_up()
    assert [kind for kind, _ in coordinators_alerts(tracker, "DUR")] == [
        "late-release-notice",
        "correction",
    ]
    assert coordinators_alerts(tracker, "WM") == []
    once = alerts_on_record(tracker)
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == once


def test_a_retracted_level_gives_way_to_the_level_known_when_the_retraction_came(
    tracker: Tracker,
) -> None:
    """Level 1 (no rule) when the notice arrived; a level 2 before the notice reported
    later; then the level 1 retracted. From then on the level at the notice is 2, whose six
    weeks the notice met: level 3, superseded before the notice, was never the level it was
    judged on, so no co-ordinator is told."""
    h = History("WM-000197")  # West Mercia's shipped rules: P3M at level 3, P6W at level 2
    h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=3)
    wrong = h.add("mappa.level-changed", "2005-02-01T10:00:00+00:00", level=1)
    notified(h, "2005-03-01T10:00:00+00:00", expected="2005-05-01")
    ingest(tracker, h.documents)
    tracker.catch_up()
    ingest(tracker, [h.add("mappa.level-changed", "2005-02-15T10:00:00+00:00", level=2)])
    tracker.catch_up()
    ingest(tracker, [h.retract(wrong, "2005-07-01T00:00:00+00:00")])
    tracker.catch_up()

    assert coordinators_alerts(tracker, "WM") == []
    tracker.rebuild("victim-alerts")
    assert coordinators_alerts(tracker, "WM") == []


def test_a_rebuild_leaves_a_late_notice_alert_raised_on_a_fact_that_came_after_a_retraction(
    tracker: Tracker,
) -> None:
    """Live, level 3 arrives last (late), after two retractions, and makes the notice late:
    one alert. Replayed, the moment before a retraction does not hold level 3 yet; the alert
    the whole history derives is not corrected there."""
    h = History("WM-000193")
    category = h.add("mappa.category-assigned", "2004-11-01T10:00:00+00:00", category=2)
    level_1 = h.add("mappa.level-changed", "2004-12-01T10:00:00+00:00", level=1)
    h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=2)
    notified(h, "2005-01-10T10:00:00+00:00", expected="2005-03-01")
    ingest(tracker, h.documents)
    tracker.catch_up()
    for later in (
        h.retract(level_1, "2005-02-01T10:00:00+00:00"),
        h.retract(category, "2005-02-02T10:00:00+00:00"),
        h.add("mappa.level-changed", "2005-01-05T10:00:00+00:00", level=3),
    ):
        ingest(tracker, [later])
        tracker.catch_up()
    assert coordinators_alerts(tracker, "WM") == [("late-release-notice", 40)]
    tracker.rebuild("victim-alerts")
    assert coordinators_alerts(tracker, "WM") == [("late-release-notice", 40)]


def test_retracting_the_level_a_late_notice_alert_gave_corrects_it_and_tells_the_right_shortfall(
    tracker: Tracker,
) -> None:
    """Level 2 (six weeks) made a notice 22 days ahead 20 days short; the level-2 change is
    retracted: the offender was at level 3 (three months), so the co-ordinator is told the
    alert was in error and gets the right one, 68 days short; a rebuild repeats none of it."""
    h = History("WM-000194")
    h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=3)
    level_2 = h.add("mappa.level-changed", "2005-01-05T10:00:00+00:00", level=2)
    notified(h, "2005-01-10T10:00:00+00:00", expected="2005-02-01")
    ingest(tracker, h.documents)
    tracker.catch_up()
    assert coordinators_alerts(tracker, "WM") == [("late-release-notice", 20)]

    ingest(tracker, [h.retract(level_2, "2005-01-20T10:00:00+00:00")])
    tracker.catch_up()
    assert coordinators_alerts(tracker, "WM") == [
        ("late-release-notice", 20),
        ("correction", None),
        ("late-release-notice", 68),
    ]
    once = alerts_on_record(tracker)
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == once


def test_a_late_notice_alert_corrected_with_its_level_is_told_again_when_the_level_is_sent_again(
    tracker: Tracker,
) -> None:
    """Level 3 made a notice 22 days ahead 68 days short; the level change is retracted (no
    level: no rule, the alert was in error), then sent again under a new eventId: the
    notice is late again, saying the same, and the co-ordinator is told again; a rebuild
    repeats none of it."""
    h = History("WM-000195")
    level_3 = h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=3)
    notified(h, "2005-01-10T10:00:00+00:00", expected="2005-02-01")
    ingest(tracker, h.documents)
    tracker.catch_up()
    ingest(tracker, [h.retract(level_3, "2005-01-20T10:00:00+00:00")])
    tracker.catch_up()
    assert coordinators_alerts(tracker, "WM") == [
        ("late-release-notice", 68),
        ("correction", None),
    ]

    ingest(tracker, [h.add("mappa.level-changed", "2005-01-01T10:00:00+00:00", level=3)])
    tracker.catch_up()
    assert coordinators_alerts(tracker, "WM") == [
        ("late-release-notice", 68),
        ("correction", None),
        ("late-release-notice", 68),
    ]
    once = alerts_on_record(tracker)
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == once


def test_a_vlos_list_is_oldest_first_by_instant_whatever_offset_the_senders_wrote(
    tracker: Tracker,
) -> None:
    """Raised together, two events of one morning: the transfer at 10:00 BST (09:00 UTC)
    came before the abscond at 09:30 UTC, though its text sorts after."""
    h = History("WM-000196")
    h.add("custody.received", "2005-01-01T10:00:00+00:00", prison="HMP A", reason="sentence")
    h.add("victim.enrolled", "2005-01-02T10:00:00+00:00", victimRef="V-1", vloRef="VLO-T")
    absconded = h.add("custody.absconded", "2005-06-01T09:30:00+00:00")
    transferred = h.add(
        "custody.transferred", "2005-06-01T10:00:00+01:00", fromPrison="HMP A", toPrison="HMP B"
    )
    ingest(tracker, h.documents)
    tracker.catch_up()
    with tracker.views.transaction() as tx:
        listed = [raised.alert.event_id for raised in alerts_for(tx, "VLO-T")]
    assert listed == [transferred["eventId"], absconded["eventId"]]


def test_a_rebuild_raises_nothing_for_an_event_retracted_where_its_victim_enrolled_again(
    tracker: Tracker,
) -> None:
    """One submission: a recall told through the victim's enrolment, an unrelated fact
    retracted, the victim enrolled again (same VLO) at the recall's instant, then the recall
    retracted: told and corrected once; a rebuild, which has the correction on record while
    it replays the moment before the recall's retraction, raises nothing again."""
    h = History("WM-000197")
    h.add("custody.released", "2005-01-12T19:00:00+00:00", releaseType="licence")
    varied = h.add("sentence.varied", "2005-02-05T10:30:00+00:00", reason="other")
    h.add("victim.enrolled", "2005-04-02T22:07:00+00:00", victimRef="V-0", vloRef="VLO-1")
    recall = h.add("licence.recalled", "2005-04-14T11:00:00+00:00", reason="other")
    h.retract(varied, "2005-07-01T00:00:00+00:00")
    h.add("victim.enrolled", "2005-04-14T11:00:00+00:00", victimRef="V-0", vloRef="VLO-1")
    h.retract(recall, "2005-07-01T00:00:00+00:00")
    ingest(tracker, h.documents)
    tracker.catch_up()
    once = alerts_on_record(tracker)
    assert [a.kind for a in once.raised] == ["recalled"]
    assert once.corrected == once.raised
    tracker.rebuild("victim-alerts")
    assert alerts_on_record(tracker) == once
