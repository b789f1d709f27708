"""Rebuilding a projection from zero gives exactly the views of the incremental run."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers.interchange import InvalidDocument, parse_document
from infra.bootstrap import Tracker, projection_writers
from infra.generator import generate_history
from infra.rebuild import offender_ranges, rebuild_projections, replay
from infra.viewdb import PostgresViewDatabase, SQLiteViewDatabase
from projections.base import load_histories, prune_shared_histories
from projections.ports import ViewDatabase
from projections.statistical_return.projection import statistical_return
from tests.conftest import (
    TrackerFactory,
    _create_schema,
    _drop_schema,
    database_url_for_tests,
    free_port,
)

VIEW_QUERIES = {
    "caseload": [
        "SELECT * FROM caseload_offenders ORDER BY offender_id",
        "SELECT * FROM caseload_orders ORDER BY offender_id, event_id",
    ],
    "statistical-return": ["SELECT * FROM return_offender_areas ORDER BY area, offender_id"],
    "victim-alerts": [
        # raised_at is when the alert was first raised: a record, not derived from the events.
        "SELECT alert_id, offender_id, kind, recipient, victim_ref, offender_ref, area, event_id, "
        "event_type, occurred_at, recorded_at, late_by_seconds, message, details, "
        "corrects_alert_id FROM victim_alerts ORDER BY alert_id"
    ],
    "data-quality": ["SELECT * FROM data_quality_queries ORDER BY query_id"],
}


def snapshot(views: ViewDatabase, name: str) -> list[Any]:
    rows: list[Any] = []
    with views.transaction() as tx:
        for query in VIEW_QUERIES[name]:
            tx.execute(query)
            rows.append([tuple(str(v) for v in row) for row in tx.fetchall()])
        # As the projection reads them: its own copy, or the one it shares with others.
        rows.append(
            [(h.offender_id, h.mappa_ref, h.version, h.documents) for h in load_histories(tx, name)]
        )
        if name == "statistical-return":
            rows.append([statistical_return(tx, "WM", year) for year in range(2002, 2007)])
    return rows


def views_of(tracker: Tracker) -> dict[str, list[Any]]:
    return {name: snapshot(tracker.views, name) for name in tracker.writers}


def assert_views_are(tracker: Tracker, expected: dict[str, list[Any]]) -> None:
    for name in tracker.writers:
        assert snapshot(tracker.views, name) == expected[name], name


def ingest_incrementally(tracker: Tracker, lines: list[str], chunk: int) -> None:
    """Ingest a chunk at a time, bringing the projections up to date after each."""
    service = tracker.ingest_service()
    facts = []
    for number, line in enumerate(lines, start=1):
        try:
            facts.append((number, parse_document(line)))
        except InvalidDocument:
            continue
    for start in range(0, len(facts), chunk):
        service.ingest(facts[start : start + chunk])
        tracker.catch_up()


def build_incrementally(tracker_factory: TrackerFactory) -> Tracker:
    tracker = tracker_factory(batch_size=37)
    lines = generate_history("WM", 2002, 2006, 60, seed=11)
    ingest_incrementally(tracker, lines, chunk=150)
    return tracker


def test_rebuilding_each_projection_in_place_gives_the_incremental_views(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = build_incrementally(tracker_factory)
    for name in tracker.writers:
        before = snapshot(tracker.views, name)
        assert any(before[0]), f"{name}: the incremental run produced no rows"
        tracker.rebuild(name)
        assert snapshot(tracker.views, name) == before, name


def test_rebuilding_every_projection_at_once_in_processes_gives_the_incremental_views(
    tracker_factory: TrackerFactory, backend: str
) -> None:
    tracker = build_incrementally(tracker_factory)
    names = list(tracker.writers)
    before = views_of(tracker)
    progress: dict[str, int] = {}

    def counted(name: str, events: int) -> None:
        progress[name] = progress.get(name, 0) + events

    if backend == "sqlite":
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            rebuild_projections(tracker, names, jobs=2)
        assert views_of(tracker) == before
        return
    rebuilt = rebuild_projections(tracker, names, jobs=2, on_batch=counted)
    assert [r.projection for r in rebuilt] == names
    events = tracker.max_notification_id()
    # Each was rebuilt in a process of its own, from the whole store, reporting its progress.
    assert all(r.applied > 0 and r.peak_rss_kib > 0 for r in rebuilt)
    assert progress == {name: events for name in names}
    assert_views_are(tracker, before)


def test_a_replay_read_in_small_pages_gives_the_incremental_views(
    tracker_factory: TrackerFactory,
) -> None:
    # Pages of 7 events: most offenders' streams are cut by a page's end and carried over,
    # and many are longer than a page.
    tracker = build_incrementally(tracker_factory)
    names = list(tracker.writers)
    before = views_of(tracker)
    longest = max(len(h.documents) for h in _histories(tracker, "caseload"))
    assert longest > 7
    rebuilt = rebuild_projections(tracker, names, page=7)
    events = tracker.max_notification_id()
    assert [(r.projection, r.applied) for r in rebuilt] == [(name, events) for name in names]
    assert_views_are(tracker, before)


def test_events_stored_after_the_replay_began_are_caught_up_from_the_log(
    tracker_factory: TrackerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = build_incrementally(tracker_factory)
    names = list(tracker.writers)
    before = views_of(tracker)
    events = tracker.max_notification_id()
    # As if the last 100 events were stored while the replay ran: it reads the store only
    # up to the notification that was last when it began.
    monkeypatch.setattr(tracker, "max_notification_id", lambda: events - 100)
    caught_up: dict[str, int] = {}
    original = tracker.catch_up

    def counted_catch_up(*args: Any, **kwargs: Any) -> dict[str, int]:
        caught_up.update(original(*args, **kwargs))
        return caught_up

    monkeypatch.setattr(tracker, "catch_up", counted_catch_up)
    rebuilt = rebuild_projections(tracker, names)
    assert caught_up == dict.fromkeys(names, 100)
    assert all(r.applied == events for r in rebuilt)
    monkeypatch.undo()
    for name in names:
        assert tracker.writer(name).position("offenders") == events
        assert snapshot(tracker.views, name) == before[name], name


def test_a_rebuild_stopped_part_way_is_completed_by_catching_up(
    tracker_factory: TrackerFactory,
) -> None:
    # A replay stores whole offenders a page at a time; stopped after some, the projection
    # is at position 0 with those offenders' histories complete, and catching up from the
    # log skips what they hold.
    tracker = build_incrementally(tracker_factory)
    names = list(tracker.writers)
    before = views_of(tracker)
    for name in names:
        tracker.writer(name).reset()
    first_half, _ = offender_ranges(2)
    replayed = replay(tracker, names, first_half, tracker.max_notification_id(), page=50)
    assert 0 < replayed["caseload"] < tracker.max_notification_id()
    caught_up = tracker.catch_up(names)
    assert caught_up == {name: tracker.max_notification_id() - replayed[name] for name in names}
    assert_views_are(tracker, before)


def _histories(tracker: Tracker, name: str) -> list[Any]:
    with tracker.views.transaction() as tx:
        return load_histories(tx, name)


def test_projecting_from_zero_into_empty_views_gives_the_incremental_views(
    tracker_factory: TrackerFactory, backend: str, tmp_path: Path
) -> None:
    tracker = build_incrementally(tracker_factory)
    fresh: ViewDatabase
    schema = f"test_{uuid.uuid4().hex[:12]}"
    if backend == "postgres":
        _create_schema(schema)
        fresh = PostgresViewDatabase(database_url_for_tests(), schema)
    else:
        fresh = SQLiteViewDatabase(tmp_path / "fresh-views.sqlite")
    try:
        from_zero = Tracker(
            tracker.settings.model_copy(update={"batch_size": 1000}),
            tracker.records,
            fresh,
            tracker.areas,
            projection_writers(fresh, tracker.areas),
        )
        from_zero.catch_up()
        for name in tracker.writers:
            assert snapshot(fresh, name) == snapshot(tracker.views, name), name
    finally:
        fresh.close()
        if backend == "postgres":
            _drop_schema(schema)


def test_alerts_do_not_depend_on_how_deliveries_are_batched(
    tracker_factory: TrackerFactory,
) -> None:
    from tests.builders import History

    h = History("WM-000555")
    h.add("victim.enrolled", "2004-01-01T10:00:00+00:00", victimRef="V-1", vloRef="VLO-1")
    h.add("custody.received", "2004-01-02T10:00:00+00:00", prison="HMP A", reason="sentence")
    conditions = h.add(
        "licence.conditions-set",
        "2004-03-01T10:00:00+00:00",
        conditions=[{"code": "non-contact", "text": "no contact", "protectsVictim": True}],
    )
    h.retract(conditions, "2004-03-02T10:00:00+00:00")
    alerts = []
    for batch_size in (1, 1000):
        tracker = tracker_factory(separate_store=True, batch_size=batch_size)
        tracker.ingest_service().ingest(list(enumerate(h.facts())))
        tracker.catch_up()
        with tracker.views.transaction() as tx:
            tx.execute("SELECT kind, event_id FROM victim_alerts ORDER BY sequence")
            alerts.append(tx.fetchall())
    # Raised when the conditions arrived, corrected when the retraction did: either way.
    assert (
        alerts[0]
        == alerts[1]
        == [
            ("licence-conditions", conditions["eventId"]),
            ("correction", conditions["eventId"]),
        ]
    )


def test_the_rebuild_command_runs_projections_at_once_only_where_the_store_allows_it(
    tracker_factory: TrackerFactory,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infra.cli import main
    from tests.integration.test_victim_alerts_acceptance import use_store

    tracker = build_incrementally(tracker_factory)
    before = snapshot(tracker.views, "caseload")
    use_store(tracker, monkeypatch)
    assert main(["rebuild", "all", "--jobs", "0", "--quiet"]) == 2
    assert "--jobs: expected 1 or more, got 0" in capsys.readouterr().err
    status = main(["rebuild", "all", "--jobs", "2", "--quiet"])
    out, err = capsys.readouterr()
    if backend == "sqlite":
        assert status == 2
        assert "--jobs above 1 needs PostgreSQL" in err
        assert out == ""
    else:
        assert status == 0
        events = tracker.max_notification_id()
        expected = [f"{name}: rebuilt from {events} events" for name in tracker.writers]
        assert out.splitlines() == expected
    assert snapshot(tracker.views, "caseload") == before


def _shared_rows(tracker: Tracker) -> tuple[int, int, list[Any]]:
    """(shared histories, those no projection refers to, each projection's own copies)."""
    with tracker.views.transaction() as tx:
        tx.execute("SELECT count(*) FROM shared_histories")
        (shared,) = tx.fetchone() or (0,)
        tx.execute(
            "SELECT count(*) FROM shared_histories s WHERE NOT EXISTS (SELECT 1 FROM "
            "projection_histories h WHERE h.offender_id = s.offender_id "
            "AND h.version = s.version AND h.history = '')"
        )
        (unreferenced,) = tx.fetchone() or (0,)
        tx.execute(
            "SELECT projection, count(*) FROM projection_histories WHERE history <> '' "
            "GROUP BY projection ORDER BY projection"
        )
        own = tx.fetchall()
    return int(shared), int(unreferenced), own


def test_rebuilding_every_projection_stores_each_history_once_for_all_of_them(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = build_incrementally(tracker_factory)
    offenders = len(_histories(tracker, "caseload"))
    before = views_of(tracker)
    assert _shared_rows(tracker) == (0, 0, [(name, offenders) for name in sorted(before)])
    rebuild_projections(tracker, list(tracker.writers))
    # One copy of each history, referred to by every projection; none of their own.
    assert _shared_rows(tracker) == (offenders, 0, [])
    assert_views_are(tracker, before)


def test_a_projection_that_moves_an_offender_on_keeps_its_own_copy_and_the_others_the_shared(
    tracker_factory: TrackerFactory,
) -> None:
    tracker = tracker_factory(batch_size=37)
    lines = generate_history("WM", 2002, 2006, 60, seed=11)
    # Later: the last fact of every other offender (nothing before it refers to it).
    last_of: dict[str, int] = {}
    for number, line in enumerate(lines):
        last_of[json.dumps(json.loads(line)["personReference"], sort_keys=True)] = number
    later_numbers = set(sorted(last_of.values())[::2])
    earlier = [line for n, line in enumerate(lines) if n not in later_numbers]
    later = [line for n, line in enumerate(lines) if n in later_numbers]
    ingest_incrementally(tracker, earlier, chunk=150)
    names = list(tracker.writers)
    rebuild_projections(tracker, names)
    shared_before = {h.offender_id: h.documents for h in _histories(tracker, "caseload")}
    offenders = len(shared_before)
    # Later facts, taken in by the caseload alone: it stores the offenders it moves on as
    # copies of its own, and the others go on reading the copies they shared with it.
    facts = [(n, parse_document(line)) for n, line in enumerate(later, start=1)]
    tracker.ingest_service().ingest(facts)
    tracker.catch_up(["caseload"])
    moved_on = {
        h.offender_id
        for h in _histories(tracker, "caseload")
        if h.documents != shared_before.get(h.offender_id)
    }
    assert 0 < len(moved_on) < offenders
    assert _shared_rows(tracker) == (offenders, 0, [("caseload", len(moved_on))])
    for name in names[1:]:
        assert {h.offender_id: h.documents for h in _histories(tracker, name)} == shared_before
    # Once every projection has moved them on, their shared copies are referred to by none,
    # and the next rebuild prunes those, and only those.
    tracker.catch_up()
    caught_up = views_of(tracker)
    assert _shared_rows(tracker)[:2] == (offenders, len(moved_on))
    rebuild_projections(tracker, names)
    assert _shared_rows(tracker) == (len(_histories(tracker, "caseload")), 0, [])
    assert_views_are(tracker, caught_up)
    # And they are the views of projecting the whole store from zero, sharing nothing.
    for name in names:
        tracker.writer(name).reset()
    tracker.catch_up()
    assert_views_are(tracker, caught_up)


# SQLite takes one writer at a time: there a replay and a prune cannot overlap.
@pytest.mark.parametrize("backend", ["postgres"])
def test_pruning_waits_for_a_replay_in_progress_to_commit_its_references(
    tracker_factory: TrackerFactory,
) -> None:
    # A replay's transaction may find the shared copy it needs stored already by an earlier
    # rebuild, and refer to it: that copy, unreferenced until then, must not be pruned.
    tracker = tracker_factory()
    with tracker.views.transaction() as tx:
        tx.execute("INSERT INTO shared_histories VALUES ('someone', 3, '[]')")
    replaying = threading.Event()
    done = threading.Event()

    def replay_referring_to_it() -> None:
        with tracker.views.transaction() as tx:
            tx.execute(
                "INSERT INTO shared_histories VALUES ('someone', 3, '[]') "
                "ON CONFLICT (offender_id, version) DO NOTHING"
            )
            tx.execute(
                "INSERT INTO projection_histories VALUES ('caseload', 'someone', 'WM-1', 3, '')"
            )
            replaying.set()
            done.wait(timeout=30)

    replay = threading.Thread(target=replay_referring_to_it)
    replay.start()
    assert replaying.wait(timeout=30)
    pruning = threading.Thread(target=_prune, args=(tracker,))
    pruning.start()
    try:
        pruning.join(timeout=1.0)
        assert pruning.is_alive(), "the prune did not wait for the replay's transaction"
    finally:
        done.set()
    replay.join(timeout=30)
    pruning.join(timeout=30)
    assert not pruning.is_alive()
    assert _shared_rows(tracker) == (1, 0, [])
    assert [h.documents for h in _histories(tracker, "caseload")] == [[]]


def _prune(tracker: Tracker) -> None:
    with tracker.views.transaction() as tx:
        prune_shared_histories(tx)


@pytest.mark.parametrize("backend", ["postgres"])
def test_with_kafka_configured_a_rebuild_is_refused_unless_the_broker_says_no_projector_runs(
    tracker_factory: TrackerFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A broker that does not answer cannot say so: the rebuild is refused, and changes
    nothing, unless the operator says the projectors are stopped. (Refused beside a running
    projector on the real broker: tests/e2e/test_alerts_on_the_pipeline.py.)"""
    from infra.cli import main
    from tests.integration.test_victim_alerts_acceptance import use_store

    tracker = build_incrementally(tracker_factory)
    before = views_of(tracker)
    positions = tracker.writer("caseload").positions()
    use_store(tracker, monkeypatch)
    port = free_port()
    monkeypatch.setenv("MAPPA_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")

    assert main(["rebuild", "caseload", "--quiet"]) == 1
    out, err = capsys.readouterr()
    assert "rebuild refused: cannot tell whether Kafka projectors of caseload are running" in err
    assert "--projectors-stopped" in err
    assert out == ""
    assert tracker.writer("caseload").positions() == positions
    assert_views_are(tracker, before)

    assert main(["rebuild", "caseload", "--quiet", "--projectors-stopped"]) == 0
    events = tracker.max_notification_id()
    assert capsys.readouterr().out.splitlines() == [f"caseload: rebuilt from {events} events"]
    assert_views_are(tracker, before)
