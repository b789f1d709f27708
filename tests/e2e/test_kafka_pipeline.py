"""The production pipeline end to end: real Apache Kafka, real PostgreSQL, real processes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import Tracker, bootstrap, topics
from infra.cli import ingest_file
from infra.generator import generate_history
from infra.settings import Settings
from projections.base import load_histories
from projections.statistical_return.projection import statistical_return
from tests.e2e.pipeline import (
    PROJECTIONS,
    Pipeline,
    consume_all,
    kafka_bootstrap,
    send_with_kcat,
    wait_until,
)
from tests.integration.test_victim_alerts_acceptance import (
    alerts_on_record,
    assert_derived_from_deliveries,
    stored_documents,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    with Pipeline.running_in(tmp_path) as running:
        yield running


def write_history(path: Path, offenders: int, seed: int) -> list[str]:
    lines = generate_history("WM", 2001, 2009, offenders, seed=seed)
    path.write_text("\n".join(lines) + "\n")
    return lines


def embedded_views(tmp_path: Path, history: Path) -> dict[str, Any]:
    """The views the embedded default (SQLite, no Kafka) gives for the same file."""
    tracker = bootstrap(
        Settings(data_dir=tmp_path / "embedded", database_url=None, kafka_bootstrap=None)
    )
    try:
        ingest_file(tracker, history, 1000, progress=False)
        tracker.catch_up()
        return comparable_views(tracker)
    finally:
        tracker.close()


def comparable_views(tracker: Tracker) -> dict[str, Any]:
    """Every view, without what depends on when this store received each event."""
    with tracker.views.transaction() as tx:
        tx.execute(
            "SELECT offender_id, mappa_ref, area, bcu, category, level, managed, in_custody, "
            "on_licence, registered, expected_release_date, release_type "
            "FROM caseload_offenders ORDER BY offender_id"
        )
        caseload = [tuple(str(v) for v in row) for row in tx.fetchall()]
        returns = [statistical_return(tx, "WM", year) for year in range(2001, 2010)]
        returns.append(statistical_return(tx, "WM", 2007, layout="2008"))
        tx.execute(
            "SELECT alert_id, kind, recipient, victim_ref, offender_ref, event_id, "
            "corrects_alert_id FROM victim_alerts ORDER BY alert_id"
        )
        alerts = [tuple(str(v) for v in row) for row in tx.fetchall()]
        histories = [
            (name, h.offender_id, [_without_recorded_at(d) for d in h.documents])
            for name in sorted(tracker.writers)
            for h in load_histories(tx, name)
        ]
    return {"caseload": caseload, "returns": returns, "alerts": alerts, "histories": histories}


def assert_same_views(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for view in expected:
        if view == "alerts":
            missing = sorted(set(expected[view]) - set(actual[view]))
            extra = sorted(set(actual[view]) - set(expected[view]))
            assert not missing and not extra, f"alerts missing {missing[:5]}, extra {extra[:5]}"
        assert actual[view] == expected[view], view


def _without_recorded_at(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "recordedAt"}


def published_alerts(pipeline: Pipeline) -> list[str]:
    messages = consume_all(pipeline, topics(pipeline.settings).victim_alerts)
    return [json.loads(m.value)["alert_id"] for m in messages]


def assert_every_alert_published_once(pipeline: Pipeline, views: dict[str, Any]) -> None:
    def all_published() -> bool:
        return len(published_alerts(pipeline)) >= len(views["alerts"])

    wait_until(all_published, 60, "every alert on the alerts topic")
    published = published_alerts(pipeline)
    assert len(published) == len(set(published)), "an alert was published twice"
    assert sorted(published) == [row[0] for row in views["alerts"]]


def assert_settles_on_the_views(
    pipeline: Pipeline,
    expected: dict[str, Any],
    what: str = "the pipeline to settle",
    relays: int = 1,
) -> None:
    """Once everything sent is consumed, the views are ``expected``'s, and the alerts those
    the contract derives from what the pipeline stored and when.

    Not the embedded run's alerts: alerts are judged on what was known at each moment, and
    the pipeline's ingest stores what each poll brought in one transaction (one moment),
    where the embedded run stores a file's lines a thousand at a time.
    """
    pipeline.wait_until_settled(300, what, relays=relays)
    tracker = pipeline.tracker()
    try:
        actual = comparable_views(tracker)
        assert_derived_from_deliveries(alerts_on_record(tracker), stored_documents(tracker))
    finally:
        tracker.close()
    assert_same_views(_without_alerts(actual), _without_alerts(expected))
    assert_every_alert_published_once(pipeline, actual)


def _without_alerts(views: dict[str, Any]) -> dict[str, Any]:
    return {view: rows for view, rows in views.items() if view != "alerts"}


def test_ten_thousand_events_from_kcat_and_kafka_python_reach_every_projection(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    lines = write_history(history, offenders=1300, seed=21)
    assert len(lines) >= 10_000
    expected = embedded_views(tmp_path, history)
    second_half = tmp_path / "second-half.jsonl"
    second_half.write_text("\n".join(lines[len(lines) // 2 :]) + "\n")

    pipeline.start_all(projector_instances=2)  # two instances share each group's partitions
    send_with_kcat(pipeline, lines[: len(lines) // 2])
    assert pipeline.mappa("produce", str(second_half)).returncode == 0
    assert_settles_on_the_views(pipeline, expected)


def test_killed_processes_and_restarted_servers_leave_the_views_of_a_clean_run(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    lines = write_history(history, offenders=450, seed=33)
    expected = embedded_views(tmp_path, history)
    thirds = [lines[i * len(lines) // 3 : (i + 1) * len(lines) // 3] for i in range(3)]
    parts = []
    for number, third in enumerate(thirds):
        part = tmp_path / f"part-{number}.jsonl"
        part.write_text("\n".join(third) + "\n")
        parts.append(part)

    pipeline.start_all()
    assert pipeline.mappa("produce", str(parts[0])).returncode == 0

    def projected_some() -> bool:
        tracker = pipeline.tracker()
        try:
            return bool(tracker.writer("caseload").positions())
        finally:
            tracker.close()

    wait_until(projected_some, 60, "the first events to be projected")
    # kill -9 in mid-stream: no shutdown, no flush, no commit.
    pipeline.kill("project caseload 0")
    pipeline.kill("relay")
    pipeline.kill("publish-alerts")
    assert pipeline.mappa("produce", str(parts[1])).returncode == 0
    pipeline.start("project", "caseload", label="project caseload 0")
    pipeline.start("relay")
    pipeline.start("publish-alerts")

    # The broker goes away and comes back.
    subprocess.run([str(REPO / "scripts" / "kafka"), "stop"], check=True, timeout=120)
    subprocess.run([str(REPO / "scripts" / "kafka"), "start"], check=True, timeout=180)
    assert pipeline.mappa("produce", str(parts[2])).returncode == 0

    # So does the database.
    subprocess.run([str(REPO / "scripts" / "postgres"), "stop"], check=True, timeout=120)
    subprocess.run([str(REPO / "scripts" / "postgres"), "start"], check=True, timeout=120)

    assert_settles_on_the_views(pipeline, expected, "the pipeline to settle after the faults")


def test_sending_the_same_events_twice_changes_nothing_anywhere(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    write_history(history, offenders=120, seed=5)
    pipeline.start_all()
    assert pipeline.mappa("produce", str(history)).returncode == 0
    pipeline.wait_until_settled(180, "the pipeline to settle")
    tracker = pipeline.tracker()
    try:
        stored, views = tracker.max_notification_id(), comparable_views(tracker)
    finally:
        tracker.close()
    published = published_alerts(pipeline)

    assert pipeline.mappa("produce", str(history)).returncode == 0
    pipeline.wait_until_settled(180, "the resent events to be consumed")
    tracker = pipeline.tracker()
    try:
        assert tracker.max_notification_id() == stored
        assert comparable_views(tracker) == views
    finally:
        tracker.close()
    assert published_alerts(pipeline) == published


def test_bad_messages_go_to_the_dead_letter_topic_with_reasons_and_later_ones_are_processed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    good = generate_history("WM", 2004, 2004, 3, seed=9, invalid_lines=False)
    template = json.loads(good[0])
    unknown_type = {**template, "eventId": str(uuid.uuid4()), "eventType": "custody.teleported"}
    no_occurred_at = {k: v for k, v in template.items() if k != "occurredAt"}
    no_occurred_at["eventId"] = str(uuid.uuid4())
    bad = ['{"eventId": "truncated', json.dumps(unknown_type), json.dumps(no_occurred_at)]
    history = tmp_path / "mixed.jsonl"
    history.write_text("\n".join([*bad, *good]) + "\n")

    pipeline.start_all()
    assert pipeline.mappa("produce", str(history)).returncode == 0
    pipeline.wait_until_settled(120, "the pipeline to settle")

    dead = consume_all(pipeline, topics(pipeline.settings).inbound_dead_letters)
    reasons = {m.value.decode(): dict(m.headers)["mappa.error"].decode() for m in dead}
    assert set(reasons) == set(bad), "each bad message, byte for byte, and nothing else"
    assert reasons[bad[0]].startswith("not valid JSON")
    assert reasons[bad[1]] == "eventType: unknown event type 'custody.teleported'"
    assert reasons[bad[2]] == "occurredAt: field required"
    tracker = pipeline.tracker()
    try:
        stored = tracker.records.known_events([json.loads(line)["eventId"] for line in good])
        assert len(stored) == len({json.loads(line)["eventId"] for line in good})
    finally:
        tracker.close()


def test_an_offenders_documents_share_one_partition_whether_kcat_or_mappa_produce_sends_them(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    lines = [line for line in write_history(tmp_path / "h.jsonl", offenders=40, seed=5) if line]
    by_kafka_python = tmp_path / "again.jsonl"
    by_kafka_python.write_text("\n".join(lines) + "\n")
    assert pipeline.mappa("produce", str(by_kafka_python)).returncode == 0
    send_with_kcat(pipeline, lines)

    partitions: dict[bytes, set[int]] = {}
    for message in consume_all(pipeline, topics(pipeline.settings).inbound):
        if message.key in (None, b"unreadable"):
            continue  # the history's deliberately unreadable lines have no MAPPA reference
        partitions.setdefault(message.key, set()).add(message.partition)
    assert len(partitions) > 30
    assert {key: p for key, p in partitions.items() if len(p) > 1} == {}


def test_ingest_relay_and_projectors_run_as_several_processes_give_the_same_views(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    history = tmp_path / "history.jsonl"
    write_history(history, offenders=200, seed=8)
    expected = embedded_views(tmp_path, history)
    pipeline.start("ingest", "--processes", "2", label="ingest")
    pipeline.start("relay", "--processes", "2", label="relay")
    for name in PROJECTIONS:
        pipeline.start("project", name, "--processes", "2", label=f"project {name}")
    pipeline.start("publish-alerts")
    assert pipeline.mappa("produce", str(history)).returncode == 0
    assert_settles_on_the_views(pipeline, expected, relays=2)
    # The relay's two processes each published a share of the offenders, and kept its place.
    started = [
        json.loads(line)["share"]
        for line in pipeline.log("relay", chars=None).splitlines()
        if line.startswith("{") and json.loads(line)["event"] == "relay started"
    ]
    assert sorted(started) == ["1 of 2", "2 of 2"]
    tracker = pipeline.tracker()
    try:
        with tracker.views.transaction() as tx:
            tx.execute("SELECT upstream FROM projection_positions WHERE projection = 'relay'")
            assert sorted(str(row[0]) for row in tx.fetchall()) == [
                "offenders:1/2",
                "offenders:2/2",
            ]
    finally:
        tracker.close()
    # Each command's two processes shared the topic's six partitions between them.
    names = topics(pipeline.settings)
    for label, topic in [("ingest", names.inbound), ("project caseload", names.offender_events)]:

        def assignments(label: str = label) -> list[list[str]]:
            return [
                entry["partitions"]
                for line in pipeline.log(label, chars=None).splitlines()
                if line.startswith("{")
                and (entry := json.loads(line))["event"] == "partitions assigned"
            ]

        def shared(topic: str = topic) -> bool:
            last_two = [set(partitions) for partitions in assignments()[-2:]]
            return (
                len(last_two) == 2
                and last_two[0].isdisjoint(last_two[1])
                and (last_two[0] | last_two[1] == {f"{topic}-{p}" for p in range(6)})
            )

        # One process may have done all the work before the other joined the group: the
        # views settle first, the group's last rebalance is logged a moment later.
        wait_until(shared, 60, f"{label}: the partitions shared by both processes")
        assigned = assignments()
        assert len(assigned) >= 2, label
        last_two = [set(partitions) for partitions in assigned[-2:]]
        assert last_two[0].isdisjoint(last_two[1]), label
        assert last_two[0] | last_two[1] == {f"{topic}-{p}" for p in range(6)}, label
    pipeline.stop_all()  # SIGTERM: every command stops its processes, each cleanly


def rewind_group(pipeline: Pipeline, process: str, topic: str) -> None:
    """Set the committed offsets of a stopped process's group back to 0, as a commit the
    broker refused (the group was rebalancing) leaves them behind the stored positions."""
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap(),
        group_id=topics(pipeline.settings).group(process),
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.commit({tp: OffsetAndMetadata(0, "", -1) for tp in partitions})
    finally:
        consumer.close()


def test_committed_offsets_left_behind_the_stored_positions_come_true_on_assignment(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """The group's committed offsets are what ``mappa status`` and operators read as lag;
    the stored positions are the truth. A process given a partition makes its committed
    offset true even when nothing more arrives on it, and consumes nothing twice."""
    history = tmp_path / "history.jsonl"
    write_history(history, offenders=60, seed=5)
    expected = embedded_views(tmp_path, history)
    pipeline.start_all()
    assert pipeline.mappa("produce", str(history)).returncode == 0
    assert_settles_on_the_views(pipeline, expected)
    pipeline.stop_all()

    names = topics(pipeline.settings)
    rewind_group(pipeline, "ingest", names.inbound)
    rewind_group(pipeline, "projector-caseload", names.offender_events)
    assert pipeline.lag("ingest", names.inbound) > 0
    assert pipeline.lag("projector-caseload", names.offender_events) > 0

    pipeline.start_all()
    pipeline.wait_until_settled(120, "the rewound groups' offsets to come true")
    assert_settles_on_the_views(pipeline, expected)
