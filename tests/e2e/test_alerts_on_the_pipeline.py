"""Issue 5's alert acceptance (a)-(c) on the production pipeline: real Kafka, real
PostgreSQL, the tracker's processes as subprocesses (``tests/e2e/pipeline.py``).

One run serves every test here (about a minute): a generated history, plus an offender
whose release notice is retracted, goes through ``mappa run ingest``, ``relay``,
``project victim-alerts`` and ``publish-alerts``; the alert projector and the relay are
killed with SIGKILL mid-stream and restarted; then everything is sent again, and finally
``mappa rebuild victim-alerts`` replays every stored event (refused while the projector runs,
done once it is stopped). The alerts on record must be,
one for one, those derived independently from the stored events
(``tests/integration/test_victim_alerts_acceptance.py``), each alert of the retracted
notice corrected exactly once, nothing raised by the resending or the replay, and every
alert on the alerts topic exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.bootstrap import topics
from tests.e2e.pipeline import Pipeline, consume_all, wait_until
from tests.integration.test_victim_alerts_acceptance import (
    OnRecord,
    alerts_on_record,
    assert_derived_from_deliveries,
    generated,
    stored_documents,
    two_victims_and_a_retracted_notice,
)

Row = tuple[str, ...]


@dataclass(frozen=True)
class Run:
    documents: list[dict[str, Any]]  # every stored fact, with recordedAt
    on_record: OnRecord  # the alerts once the pipeline settled after the kills
    settled: list[Row]  # the same, as rows
    resent: list[Row]  # after everything was sent again
    rebuilt: list[Row]  # after mappa rebuild victim-alerts
    published: list[str]  # alert ids on the alerts topic, in the end
    notice_id: str  # the crafted offender's retracted release notice
    refused: subprocess.CompletedProcess[bytes]  # mappa rebuild beside the running projector
    after_refusal: tuple[list[Row], dict[str, int]]  # the alerts and positions after it


def alert_rows(pipeline: Pipeline) -> list[Row]:
    tracker = pipeline.tracker()
    try:
        with tracker.views.transaction() as tx:
            tx.execute(
                "SELECT alert_id, kind, recipient, victim_ref, event_id, corrects_alert_id "
                "FROM victim_alerts ORDER BY alert_id"
            )
            return [tuple(str(v) for v in row) for row in tx.fetchall()]
    finally:
        tracker.close()


def stored_positions(pipeline: Pipeline) -> dict[str, int]:
    tracker = pipeline.tracker()
    try:
        return tracker.writer("victim-alerts").positions()
    finally:
        tracker.close()


def published(pipeline: Pipeline) -> list[str]:
    messages = consume_all(pipeline, topics(pipeline.settings).victim_alerts)
    return [json.loads(m.value)["alert_id"] for m in messages]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("alerts-on-the-pipeline")
    with Pipeline.running_in(workdir) as pipeline:
        yield _run(pipeline, workdir)


def _run(pipeline: Pipeline, workdir: Path) -> Run:
    lines = generated(offenders=200, seed=23)
    crafted, notice, _ = two_victims_and_a_retracted_notice()
    retraction = crafted.retract(notice, "2004-06-02T10:00:00+01:00")
    first = [*lines[: len(lines) // 2], *(json.dumps(d) for d in crafted.documents[:-1])]
    second = [*lines[len(lines) // 2 :], json.dumps(retraction)]

    for process in ("ingest", "relay", "publish-alerts"):
        pipeline.start(process)
    pipeline.start("project", "victim-alerts", label="project victim-alerts")
    assert pipeline.mappa("produce", str(write(workdir / "first.jsonl", first))).returncode == 0

    def projected_some() -> bool:
        tracker = pipeline.tracker()
        try:
            return bool(tracker.writer("victim-alerts").positions())
        finally:
            tracker.close()

    wait_until(projected_some, 60, "the first alerts to be projected")
    # kill -9 mid-stream: the projector's uncommitted batch is delivered again on restart,
    # and the relay republishes from its stored position (duplicates for the projector).
    pipeline.kill("project victim-alerts")
    pipeline.kill("relay")
    assert pipeline.mappa("produce", str(write(workdir / "second.jsonl", second))).returncode == 0
    pipeline.start("project", "victim-alerts", label="project victim-alerts")
    pipeline.start("relay")
    pipeline.wait_until_settled(120, "the pipeline to settle", ("victim-alerts",))
    tracker = pipeline.tracker()
    try:
        documents, on_record = stored_documents(tracker), alerts_on_record(tracker)
    finally:
        tracker.close()
    settled = alert_rows(pipeline)

    everything = write(workdir / "everything.jsonl", [*first, *second])
    assert pipeline.mappa("produce", str(everything)).returncode == 0
    pipeline.wait_until_settled(120, "the resent events to be consumed", ("victim-alerts",))
    resent = alert_rows(pipeline)

    # Refused while the projector runs (it would store batches into the replay), then done
    # once it is stopped, as the README says; the projector then goes on from its position.
    refused = pipeline.mappa("rebuild", "victim-alerts", "--quiet")
    after_refusal = alert_rows(pipeline), stored_positions(pipeline)
    pipeline.kill("project victim-alerts", signal.SIGTERM)
    rebuild = pipeline.mappa("rebuild", "victim-alerts", "--quiet")
    assert rebuild.returncode == 0, rebuild.stderr.decode()[-2000:]
    pipeline.start("project", "victim-alerts", label="project victim-alerts")
    pipeline.wait_until_settled(120, "the restarted projector to settle", ("victim-alerts",))
    rebuilt = alert_rows(pipeline)
    wait_until(
        lambda: len(published(pipeline)) >= len(rebuilt), 60, "every alert on the alerts topic"
    )
    return Run(documents, on_record, settled, resent, rebuilt, published(pipeline),
               notice["eventId"], refused, after_refusal)  # fmt: skip


def test_alerts_on_the_pipeline_are_one_for_one_those_derived_from_the_contract(run: Run) -> None:
    # Also: the projector killed mid-stream and the relay republishing raised none twice.
    assert_derived_from_deliveries(run.on_record, run.documents)


def test_a_retraction_on_the_pipeline_raises_one_correction_per_earlier_alert(run: Run) -> None:
    about = [row for row in run.settled if row[4] == run.notice_id]
    originals = sorted(row[0] for row in about if row[1] != "correction")
    corrected = sorted(row[5] for row in about if row[1] == "correction")
    assert len(originals) == 3  # two victims' VLOs and the area's co-ordinator
    assert corrected == originals


def test_sending_every_event_again_raises_nothing(run: Run) -> None:
    assert run.resent == run.settled


def test_replaying_every_event_raises_nothing(run: Run) -> None:
    new = [row for row in run.rebuilt if row not in run.resent]
    assert not new, f"raised by the replay: {new}"


def test_every_alert_is_on_the_alerts_topic_exactly_once(run: Run) -> None:
    assert len(run.published) == len(set(run.published)), "an alert was published twice"
    assert sorted(run.published) == [row[0] for row in run.rebuilt]


def test_a_rebuild_beside_the_running_projector_is_refused_and_changes_nothing(run: Run) -> None:
    assert run.refused.returncode == 1
    message = run.refused.stderr.decode()
    assert "rebuild refused: Kafka projectors are running for victim-alerts (1)" in message
    assert "stop those projectors" in message
    alerts, positions = run.after_refusal
    assert alerts == run.resent
    assert positions and all(position > 0 for position in positions.values())
